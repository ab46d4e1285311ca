#pragma once
// The gated MLP activation: out[t, j] = bf16(bf16(silu(gate[t, j])) * up[t, j]), gate and up the
// two halves of the fused gate_up projection. The rounding is HF LlamaMLP's in bf16:
// act_fn(gate_proj(x)) is a bf16 tensor (silu computed in fp32 and rounded), and the product
// with up_proj(x) is a bf16 multiply (rounded again).
// 8 columns per thread with 16-byte accesses when ffn and the strides are multiples of 8.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct SwigluParams {
  const std::uint16_t* gate_up = nullptr;  // bf16 [tokens, in_stride]: gate in columns [0, ffn), up in [ffn, 2 ffn)
  std::uint16_t* out = nullptr;            // bf16 [tokens, out_stride], first ffn columns
  std::int64_t tokens = 0;
  std::int64_t ffn = 0;
  std::int64_t in_stride = 0;   // elements, >= 2 * ffn
  std::int64_t out_stride = 0;  // elements, >= ffn
};

void launch_swiglu(const SwigluParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
