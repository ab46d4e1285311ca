#pragma once
// Elastic loading, step 1 of 2 (PAPER.md §3.3): the in-place update plan of the GPU-resident
// selected-KV slots of the offloaded layers. One decode step's selection S_now (the same for
// every offloaded layer) is compared with what the slots hold (S_last, and whatever older
// positions unused slots still hold); only the positions no slot holds are loaded, into the
// slots whose positions left the selection. kernels/elastic_gather.cuh then copies those rows.
//
// Everything is computed on the device (one block per (request i, KV head g), no host sync, no
// allocation), so a CUDA graph can capture it.
//
// Shapes (int32 throughout; "b" = i * kv_heads + g, the pair's index in the outputs):
//   selection         list of (i, g) at selection + i * sel_request_stride + g * sel_head_stride:
//                     LLM positions, strictly ascending, each in [0, current[i]] (current[i] only as
//                     the last entry). sel_head_stride may be 0: one list shared by every KV head.
//   selection_counts  entries of (i, g)'s list at i * count_request_stride + g * count_head_stride
//                     (count_head_stride 0 with a shared list)
//   slots             [requests] slot row of request i, 0 .. max_requests - 1, distinct
//   current           [requests] position of the token entering this step; its K/V live in the
//                     extra slot `slot_count`, so it is attended but never loaded
//   slot_positions    persistent [max_requests][kv_heads][slot_count]: the position whose K/V each
//                     slot holds, -1 = empty; updated in place
//   attend_slots      out [requests][kv_heads][slot_count + 1]: entry j < attend_counts[b] - 1 is
//                     the slot of the j-th listed past position (list order), the last entry is
//                     always slot_count (the current token, listed or not)
//   attend_counts     out [requests * kv_heads]: listed past positions + 1
//   load_positions    out [requests][kv_heads][slot_count]: positions to load, ascending
//   load_slots        out, same shape: the slot each goes to, ascending
//   load_counts       out [requests * kv_heads]
//   loaded_total      optional: += the number of loads of the launch (one per (i, g, position); the
//                     H2D bytes are that times copied layers * 2 * head_dim * 2)
//
// The plan of one (i, g) (kernels/reference/elastic_load.hpp states it once more, as plain code):
//   - the list's last entry is dropped from the past positions if it equals current[i];
//     the remaining m past positions must number at most slot_count (see "limits");
//   - a slot holding a position in [0, current[i]) that is listed keeps it (the lowest such slot,
//     should two hold the same position); every other slot is free;
//   - the k-th listed position that no slot keeps (ascending) goes to the k-th free slot in
//     ascending slot index; slot_positions records it;
//   - free slots left over keep their position, so a position that drops out and comes back
//     later costs no load, unless it is negative or >= current[i]: such a slot is set to -1.
//     Positions at or past the current token cannot be valid history; after a rollback
//     (speculative tokens rejected) they hold K/V of rejected tokens, and this drops them.
//
// Limits and what is checked where. The host checks (std::invalid_argument "elastic_plan: ...")
// sizes, pointers and strides. The lists and counts live on the device, so the kernel only
// keeps itself memory-safe there: a count is clamped to [0, slot_count + 1]; past positions
// beyond slot_count are dropped (not attended, not loaded); a request whose slot row is outside
// [0, max_requests) gets attend and load counts 0 and its table row is untouched. A list that is
// not strictly ascending or holds positions outside [0, current] gives an unspecified (but
// in-bounds) plan; two requests sharing a slot row race.
//
// Shared memory: 8 * slot_count bytes of dynamic shared memory per block (64 KB at 8192 slots,
// 128 KB at kElasticPlanMaxSlots); above 48 KB the launcher opts the kernel in once per device
// (cudaFuncSetAttribute; needs compute capability 8.0 or later).
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

// Largest slot_count (KV budget) the plan supports: two int32 arrays of this many entries fill
// 128 KB of shared memory, and each of at most 512 threads tracks 32 slots in one bit mask.
constexpr int kElasticPlanMaxSlots = 16384;

struct ElasticPlanParams {
  const std::int32_t* selection = nullptr;  // device, see above
  std::int64_t sel_request_stride = 0;      // elements, >= 0
  std::int64_t sel_head_stride = 0;         // elements, >= 0 (0: shared list)
  const std::int32_t* selection_counts = nullptr;
  std::int64_t count_request_stride = 0;
  std::int64_t count_head_stride = 0;
  const std::int32_t* slots = nullptr;       // device, [requests]
  const std::int32_t* current = nullptr;     // device, [requests]
  std::int32_t* slot_positions = nullptr;    // device, persistent [max_requests][kv_heads][slot_count]
  int requests = 0;
  int kv_heads = 0;
  int slot_count = 0;    // 1 .. kElasticPlanMaxSlots
  int max_requests = 0;  // rows of slot_positions (bounds slots[i] on the device)
  std::int32_t* attend_slots = nullptr;     // device out, [requests][kv_heads][slot_count + 1]
  std::int32_t* attend_counts = nullptr;    // device out, [requests * kv_heads]
  std::int32_t* load_positions = nullptr;   // device out, [requests][kv_heads][slot_count]
  std::int32_t* load_slots = nullptr;       // device out, same shape
  std::int32_t* load_counts = nullptr;      // device out, [requests * kv_heads]
  unsigned long long* loaded_total = nullptr;  // device, optional
};

// Dynamic shared memory one block of the plan kernel uses for this slot_count.
int elastic_plan_smem_bytes(int slot_count);

// Checks the parameters (std::invalid_argument "elastic_plan: <what>") and enqueues the kernel.
void launch_elastic_plan(const ElasticPlanParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
