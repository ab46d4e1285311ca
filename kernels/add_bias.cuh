#pragma once
// Qwen2's QKV bias after the projection: x[t, c] = bf16(x[t, c] + bias[c]) in place (fp32 add).
// HF adds the bias inside the matmul's epilogue before a single rounding; here the projection
// output is already bf16, so the sum is rounded a second time.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct AddBiasParams {
  std::uint16_t* x = nullptr;           // bf16 [tokens, row_stride], first `cols` columns used
  const std::uint16_t* bias = nullptr;  // bf16 [cols]
  std::int64_t tokens = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;  // elements, >= cols
};

void launch_add_bias(const AddBiasParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
