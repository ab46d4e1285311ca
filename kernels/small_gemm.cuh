#pragma once
// The projections of a decode step with few tokens: Y[t, o] = sum_i X[t, i] * W[o, i] for
// t < tokens (1..8), W bf16 [out, in] row-major and contiguous (nn.Linear's weight), X bf16
// [tokens, x_stride], fp32 accumulation, Y bf16 or fp32 [tokens, y_stride]. At 1..8 tokens the
// op reads W once and does almost no arithmetic per byte, so the goal is the HBM stream rate;
// cuBLAS reaches 2.5-3.7 TB/s of the H200's ~4.5 there (and adds a split-K reduce for the O
// projection). How the kernel streams W is explained in small_gemm.cu.
//
// Requirements (each violation throws std::invalid_argument naming the field): tokens in [0, 8];
// in a positive multiple of 8; x_stride >= in and a multiple of 8; y_stride >= out; x and w
// 16-byte aligned (16-byte loads); exactly one of y_bf16 / y_f32 set. X and W are read through
// the non-coherent path, so Y must not overlap them and they must not change during the kernel.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct SmallGemmParams {
  const std::uint16_t* x = nullptr;  // bf16 [tokens, x_stride], first `in` columns used
  const std::uint16_t* w = nullptr;  // bf16 [out, in], contiguous
  std::uint16_t* y_bf16 = nullptr;   // bf16 [tokens, y_stride], first `out` columns written; or
  float* y_f32 = nullptr;            // fp32 [tokens, y_stride] (the LM head's logits)
  std::int64_t tokens = 0;           // 0..8
  std::int64_t out = 0;
  std::int64_t in = 0;        // multiple of 8
  std::int64_t x_stride = 0;  // elements, >= in, multiple of 8
  std::int64_t y_stride = 0;  // elements, >= out
};

// Throws std::invalid_argument before any CUDA call when the parameters are bad; tokens == 0 or
// out == 0 launches nothing.
void launch_small_gemm(const SmallGemmParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
