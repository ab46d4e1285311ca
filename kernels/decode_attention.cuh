#pragma once
// Dense decode attention (one new query token per request) over the paged-by-slot KV cache:
// split-K flash decoding. The keys of each (request, KV head) are cut into chunks; one block
// handles one (request, KV head, chunk) for all query heads of that GQA group, so each K/V byte
// is read from HBM once per group, and writes the chunk's partial softmax state (max, sum,
// unnormalised accumulator) to an fp32 workspace; a second small kernel merges the chunks.
//
// Shapes (bf16 tensors are std::uint16_t bit patterns here; __nv_bfloat16 on the device):
//   q         [requests, q_row_stride]; query head h of row i at q[i * q_row_stride + h * head_dim ..]
//             (the fused QKV buffer [tokens, (q_heads + 2 * kv_heads) * head_dim], rotated by RoPE)
//   k_cache,  [max_requests][kv_heads][max_context][head_dim], strides in elements:
//   v_cache     element (slot, kv_head, key, d) at slot * kv_request_stride + kv_head * kv_head_stride
//               + key * head_dim + d (keys stored after RoPE)
//   slots     int32 [requests]: cache row of request i
//   lengths   int32 [requests]: keys 0 .. lengths[i] - 1 are valid (the current token's key included)
//   out       [requests, out_row_stride]; head h at out[i * out_row_stride + h * head_dim ..]
//   workspace fp32, at least decode_attention_workspace_bytes(requests, q_heads, head_dim, max_context)
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
  int max_context = 0;  // keys per cache row; lengths are clamped to it
  // Optional host-side upper bound on every lengths[i] (0: use max_context). The lengths live on
  // the device, so the grid is sized from this bound; a tight one saves launching empty blocks.
  // Keys at or beyond it are ignored, so it must really bound the lengths.
  int max_length = 0;
  float scale = 0.0f;  // softmax scale, normally 1 / sqrt(head_dim)
};

// Bytes of fp32 workspace the launch needs for these sizes (independent of kv_heads and of the
// actual lengths); 0 only when there is nothing to do.
std::size_t decode_attention_workspace_bytes(int requests, int q_heads, int head_dim, int max_context);

// Checks the parameters (std::invalid_argument naming the field) and enqueues both kernels.
void launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
