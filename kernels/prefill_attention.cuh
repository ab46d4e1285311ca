#pragma once
// Dense causal prefill attention over the KV cache (flash-attention style: online softmax over
// key tiles staged in shared memory, bf16 tensor-core products with fp32 accumulation, no
// tokens x keys matrix in memory). Token t of the batch attends to keys 0 .. positions[t] of
// cache row slots[t]; every new key (of every token in the call) must already be in the cache.
// Tokens of one request are normally consecutive rows with increasing positions (a prompt, or a
// prompt's continuation after an existing context); any order is correct, that one is fastest.
//
// Shapes (bf16 tensors are std::uint16_t bit patterns here; __nv_bfloat16 on the device):
//   q          [tokens, q_row_stride]; query head h of token t at q[t * q_row_stride + h * head_dim ..]
//              (the fused QKV buffer [tokens, (q_heads + 2 * kv_heads) * head_dim], rotated by RoPE)
//   k_cache,   [max_requests][kv_heads][max_context][head_dim], strides in elements:
//   v_cache      element (slot, kv_head, key, d) at slot * kv_request_stride + kv_head * kv_head_stride
//                + key * head_dim + d (keys stored after RoPE)
//   slots      int32 [tokens]: cache row of token t
//   positions  int32 [tokens]: position of token t (0-based); it sees keys 0 .. positions[t]
//   out        [tokens, out_row_stride]; head h at out[t * out_row_stride + h * head_dim ..]
// Query head h reads KV head h / (q_heads / kv_heads). head_dim is 32, 64 or 128; pointers
// 16-byte aligned and strides multiples of 8 elements. A token with a negative slot or position
// gets zeros; positions beyond max_context - 1 are clamped.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct PrefillAttentionParams {
  const std::uint16_t* q = nullptr;
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;
  const std::uint16_t* v_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;      // device, [tokens]
  const std::int32_t* positions = nullptr;  // device, [tokens]
  std::uint16_t* out = nullptr;
  std::int64_t out_row_stride = 0;
  int tokens = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_context = 0;
  float scale = 0.0f;  // softmax scale, normally 1 / sqrt(head_dim)
};

// Checks the parameters (std::invalid_argument naming the field) and enqueues the kernel.
void launch_prefill_attention(const PrefillAttentionParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
