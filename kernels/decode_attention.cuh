#pragma once
// Decode attention (one new query token per request) over the paged-by-slot KV cache: split-K
// flash decoding. The keys of each (request, KV head) are cut into chunks; one block handles one
// (request, KV head, chunk) for all query heads of that GQA group (up to 8; larger groups take
// one block per 8 heads), so each K/V byte is read from HBM once per group, and writes the
// chunk's partial softmax state (max, sum, unnormalised accumulator) to an fp32 workspace; a
// second small kernel merges the chunks. The products run on the tensor cores (bf16 inputs, the
// softmax weights rounded to bf16 for P V, fp32 accumulation and softmax state).
//
// Two modes, one kernel (the mode is a template parameter, so the dense path is unchanged):
// - dense (indices == nullptr): request i attends keys 0 .. lengths[i] - 1 of every KV head;
// - sparse (indices != nullptr; SpeContext's retrieval head picks the rows): request i, KV head
//   g attends exactly the count(i, g) cache rows listed for it, in list order. Duplicates would
//   be counted twice, so callers pass sets; the order only changes the fp32 summation order.
//
// Shapes (bf16 tensors are std::uint16_t bit patterns here; __nv_bfloat16 on the device):
//   q         [requests, q_row_stride]; query head h of row i at q[i * q_row_stride + h * head_dim ..]
//             (the fused QKV buffer [tokens, (q_heads + 2 * kv_heads) * head_dim], rotated by RoPE)
//   k_cache,  [max_requests][kv_heads][max_context][head_dim], strides in elements:
//   v_cache     element (slot, kv_head, key, d) at slot * kv_request_stride + kv_head * kv_head_stride
//               + key * head_dim + d (keys stored after RoPE)
//   slots     int32 [requests]: cache row of request i
//   lengths   int32 [requests], dense mode only: keys 0 .. lengths[i] - 1 are valid (the current
//             token's key included); unused (may be null) in sparse mode
//   indices   int32, sparse mode: the list of (request i, KV head g) starts at
//             indices[i * index_request_stride + g * index_head_stride]; its entry j
//             (0 <= j < count(i, g)) is a row of that head's cache, i.e. a key position, and must
//             lie in [0, max_context) (out-of-range entries are clamped into the row: no read
//             outside it, but a meaningless result). index_head_stride 0: every KV head of a
//             request reads the same list (batch-level selection). Entries past the count are
//             never read, so a list needs only count(i, g) valid entries.
//   index_counts int32, sparse mode: count(i, g) = index_counts[i * count_request_stride +
//             g * count_head_stride] (count_head_stride 0: one count per request)
//   out       [requests, out_row_stride]; head h at out[i * out_row_stride + h * head_dim ..]
//   workspace fp32, at least decode_attention_workspace_bytes(requests, q_heads, head_dim, bound)
//             with bound = max_context, or max_length when that is set and smaller
// Lengths and counts are clamped to [0, max_context]; a (request, KV head) with no keys gets zeros.
// Query head h reads KV head h / (q_heads / kv_heads) (GQA; MQA is kv_heads = 1, MHA equal counts).
// head_dim is 32, 64 or 128; pointers 16-byte aligned and strides multiples of 8 elements.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace specontext::kernels {

struct DecodeAttentionParams {
  const std::uint16_t* q = nullptr;
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;
  const std::uint16_t* v_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;    // device, [requests]
  const std::int32_t* lengths = nullptr;  // device, [requests]
  std::uint16_t* out = nullptr;
  std::int64_t out_row_stride = 0;
  float* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  int requests = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_context = 0;  // keys per cache row; lengths and counts are clamped to it
  // Optional host-side upper bound on every lengths[i] (dense) or count (sparse, e.g. the
  // selection budget + 1) (0: use max_context). The lengths and counts live on the device, so the
  // grid is sized from this bound; a tight one saves launching empty blocks. Keys at or beyond it
  // are ignored, so it must really bound the lengths or counts.
  int max_length = 0;
  float scale = 0.0f;  // softmax scale, normally 1 / sqrt(head_dim)
  // Dense mode only (sparse mode rejects it). Set it when slots, lengths and every cache row below
  // each request's newest key (lengths[i] - 1) come from stream work before the kernel launched
  // just before this one, so that only q and the newest key may still be written by that kernel:
  // a decode step whose previous kernel appends the step's key and releases the next kernel only
  // after its own wait (kernels/programmatic_launch.cuh). The split kernel then reads slots,
  // lengths and its first tiles of older keys before it waits for that kernel, so their HBM
  // latency overlaps its tail. Not for a cache that a copy or gather on the stream just filled
  // (offloaded layers).
  bool history_ready = false;

  // Sparse mode (see above); all null / 0 is dense mode. Strides in int32 elements, >= 0.
  const std::int32_t* indices = nullptr;  // device; set: sparse mode (index_counts required)
  std::int64_t index_request_stride = 0;
  std::int64_t index_head_stride = 0;  // 0: every KV head of a request reads the same list
  const std::int32_t* index_counts = nullptr;  // device; only with indices
  std::int64_t count_request_stride = 0;
  std::int64_t count_head_stride = 0;  // 0: every KV head of a request has the same count
};

// Bytes of fp32 workspace the launch needs for these sizes (independent of kv_heads, of the mode
// and of the actual lengths or counts); 0 only when there is nothing to do. max_context may be
// replaced by a smaller max_length the launches set (the grid never covers more keys).
std::size_t decode_attention_workspace_bytes(int requests, int q_heads, int head_dim, int max_context);

// Checks the parameters (std::invalid_argument naming the field) and enqueues both kernels.
void launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
