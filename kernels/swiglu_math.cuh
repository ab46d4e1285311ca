#pragma once
// The gated activation of kernels/swiglu.cuh on one pair of bf16 values, for every kernel that
// applies it (swiglu itself and small_gemm's fused gate_up epilogue), so that they round alike.
// HF LlamaMLP's rounding in bf16: act_fn(gate) is a bf16 tensor (silu in fp32, rounded), and its
// product with up is a bf16 multiply (rounded again).
#include <cuda_bf16.h>

#include <cstdint>

namespace specontext::kernels {

__device__ __forceinline__ std::uint16_t swiglu_bf16(std::uint16_t gate, std::uint16_t up) {
  const float x = __bfloat162float(__ushort_as_bfloat16(gate));
  const float act = __bfloat162float(__float2bfloat16_rn(x / (1.0f + expf(-x))));
  return __bfloat16_as_ushort(__float2bfloat16_rn(act * __bfloat162float(__ushort_as_bfloat16(up))));
}

}  // namespace specontext::kernels
