#pragma once
// Qwen3's per-head q_norm / k_norm, applied to the projections before RoPE, in place: in each
// token row of a bf16 buffer, `heads` consecutive vectors of head_dim, each
//   x = bf16(weight * bf16(x * rsqrt(mean(x^2) + eps)))   (HF Qwen3RMSNorm rounding).
// For the fused QKV buffer call it twice: x = qkv (q heads, q_norm weight) and
// x = qkv + q_heads * head_dim (kv heads, k_norm weight), both with the QKV row stride.
// One warp per (token, head).
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct HeadRmsNormParams {
  std::uint16_t* x = nullptr;             // bf16 [tokens, row_stride], heads*head_dim used per row
  const std::uint16_t* weight = nullptr;  // bf16 [head_dim]
  std::int64_t tokens = 0;
  std::int64_t row_stride = 0;  // elements, >= heads * head_dim
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;  // 1 .. 256
  float eps = 1e-6f;
};

void launch_head_rmsnorm(const HeadRmsNormParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
