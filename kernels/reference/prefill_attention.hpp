#pragma once
// CPU reference of kernels/prefill_attention: causal softmax attention of each new token over
// keys 0 .. positions[t] of its cache row, naive loops, bf16 inputs widened to float and every
// sum taken in double. Same layout as the kernel (see prefill_attention.cuh), with host pointers.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct PrefillAttentionParams {
  const std::uint16_t* q = nullptr;  // bf16 [tokens, q_row_stride]
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;  // bf16 [max_requests][kv_heads][max_context][head_dim]
  const std::uint16_t* v_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;      // [tokens]; negative gives a zero output row
  const std::int32_t* positions = nullptr;  // [tokens]; negative gives a zero output row
  int tokens = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;
};

// fp32 [tokens, q_heads * head_dim]: out[t, h, :] = sum_{j <= positions[t]} softmax_j(scale * q_t,h . k_j) v_j.
std::vector<float> prefill_attention(const PrefillAttentionParams& p);

}  // namespace specontext::ref
