#pragma once
// Elastic loading, step 2 of 2 (PAPER.md §3.3): copies the rows kernels/elastic_plan.cuh
// planned from pinned host memory into the GPU-resident slot buffers of a range of offloaded
// layers, in place; and the reverse copy that makes each step's new token loadable later.
//
// Layouts (bf16 as std::uint16_t bit patterns; elements, not bytes):
//   host_kv   [max_requests][kv_heads][host_positions][host_layers][2][head_dim]: per position, the
//             K row then the V row of every offloaded layer slot, contiguous, so the rows one
//             loaded position moves for layers [layer_begin, layer_end) are one contiguous run of
//             (layer_end - layer_begin) * 2 * head_dim * 2 bytes (H200.md: gathers from pinned
//             memory reach the link's rate only with rows of ~2 KiB). A device-accessible pointer:
//             cudaHostAlloc(cudaHostAllocMapped) + cudaHostGetDevicePointer, or any pointer under
//             UVA. Pin it once at start-up (~0.5 s per GiB on the H200 host).
//   k_slots,  device [host_layers][max_requests][kv_heads][slot_count + 1][head_dim]: slot s <
//   v_slots   slot_count holds the position slot_positions says (elastic_plan); slot slot_count
//             holds the current token (written by the step's own K/V append, not by these kernels)
//   slots     [requests] slot row of request i (indexes max_requests in both layouts)
//   load_positions, load_slots [requests][kv_heads][slot_count], load_counts [requests * kv_heads]:
//             elastic_plan's outputs
//   current   [requests] (elastic_store_current) position of the token entering this step
//
// elastic_gather: for every (i, g), k < load_counts[b] (b = i * kv_heads + g), layer l in
//   [layer_begin, layer_end): k_slots[l][slots[i]][g][load_slots[b][k]] =
//   host_kv[slots[i]][g][load_positions[b][k]][l][0], and V from [..][1]. Nothing else is written.
// elastic_store_current: for every (i, g), l in [layer_begin, layer_end):
//   host_kv[slots[i]][g][current[i]][l][0] = k_slots[l][slots[i]][g][slot_count], V likewise.
//   Enqueue it after the step has written the current token's K/V (and before the next step's
//   gather, which may load that position).
//
// Both are grid-stride loops of 16-byte copies over a grid of at most max_blocks blocks of 256
// threads, each thread keeping 8 copies in flight. The cap matters: the gather runs beside the
// step's compute, and warps that wait on host-link latency hold their SMs (H200.md: 264 or more
// gather blocks slowed an HBM-bound kernel by 45-225%, 66 blocks by ~10%).
//
// Device-side values are bounds-checked so that bad ones cannot write out of bounds: a load
// count is clamped to [0, slot_count]; a row whose request slot row, position (outside
// [0, host_positions)) or load slot (outside [0, slot_count)) is out of range is skipped.
//
// Host-side checks throw std::invalid_argument "elastic_gather: <what>" (or
// "elastic_store_current: <what>") before anything touches the device.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct ElasticGatherParams {
  const std::uint16_t* host_kv = nullptr;  // device-accessible pinned host memory, 16-byte aligned
  std::int64_t host_positions = 0;
  int host_layers = 0;
  int layer_begin = 0;  // layer slots [layer_begin, layer_end) of host_layers; empty: no-op
  int layer_end = 0;
  std::uint16_t* k_slots = nullptr;  // device, 16-byte aligned
  std::uint16_t* v_slots = nullptr;
  const std::int32_t* slots = nullptr;           // device, [requests]
  const std::int32_t* load_positions = nullptr;  // device, from elastic_plan
  const std::int32_t* load_slots = nullptr;
  const std::int32_t* load_counts = nullptr;
  int requests = 0;
  int kv_heads = 0;
  int max_requests = 0;
  int slot_count = 0;
  int head_dim = 0;    // 32, 64 or 128
  int max_blocks = 0;  // grid cap, >= 1
};

struct ElasticStoreCurrentParams {
  std::uint16_t* host_kv = nullptr;  // device-accessible pinned host memory, 16-byte aligned
  std::int64_t host_positions = 0;
  int host_layers = 0;
  int layer_begin = 0;
  int layer_end = 0;
  const std::uint16_t* k_slots = nullptr;  // device, 16-byte aligned
  const std::uint16_t* v_slots = nullptr;
  const std::int32_t* slots = nullptr;    // device, [requests]
  const std::int32_t* current = nullptr;  // device, [requests]
  int requests = 0;
  int kv_heads = 0;
  int max_requests = 0;
  int slot_count = 0;
  int head_dim = 0;
  int max_blocks = 0;
};

// Threads per block of both kernels (for sizing max_blocks against the SM count).
constexpr int kElasticCopyThreads = 256;

void launch_elastic_gather(const ElasticGatherParams& p, cudaStream_t stream);
void launch_elastic_store_current(const ElasticStoreCurrentParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
