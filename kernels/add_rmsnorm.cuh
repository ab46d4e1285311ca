#pragma once
// The residual add and the RMSNorm before each attention and MLP block (and the final norm):
//   residual[t, :] += delta[t, :]                        (fp32; skipped when delta is null)
//   out[t, :] = weight * bf16(residual[t, :] * rsqrt(mean(residual[t, :]^2) + eps))
// with HF's LlamaRMSNorm / Qwen3RMSNorm rounding: the normalised row is cast to bf16 before the
// bf16 weight multiplies it (the product rounded to bf16 again).
// One block of 256 threads per token row; 16-byte loads when hidden % 8 == 0 (else scalar), the
// weight's before the programmatic-launch wait (it is a constant).
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct AddRmsNormParams {
  float* residual = nullptr;              // fp32 [tokens, hidden], rows contiguous; updated in place
  const std::uint16_t* delta = nullptr;   // bf16 [tokens, hidden] or nullptr (no add)
  const std::uint16_t* weight = nullptr;  // bf16 [hidden]
  std::uint16_t* out = nullptr;           // bf16 [tokens, out_stride]: row t at out + t * out_stride
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;  // 1 .. 16384 (any size works; the register budget assumes <= 16384)
  float eps = 1e-6f;
  std::int64_t out_stride = 0;  // elements between output rows; 0: hidden (a wider one writes into a concatenation)
};

void launch_add_rmsnorm(const AddRmsNormParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
