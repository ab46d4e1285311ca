#pragma once
// The rotation of kernels/rope_kv_append.cuh, for every kernel that applies it (rope_kv_append
// itself and small_gemm's fused QKV epilogue), so that they round alike: a fused step and the
// separate kernels give the same bits.
#include <cuda_bf16.h>

#include <cstdint>

namespace specontext::kernels {

// cos and sin of position pos at frequency inv_freq, scaled by attention_factor. The accurate
// sincosf (no fast math): angles reach ~2.6e5 rad, which needs the full range reduction.
// __fmul_rn keeps the angle a single fp32 rounding, as torch's.
__device__ __forceinline__ void rope_cos_sin(std::int32_t pos, float inv_freq, float attention_factor, float& c, float& s) {
  const float angle = __fmul_rn(static_cast<float>(pos), inv_freq);
  sincosf(angle, &s, &c);
  c *= attention_factor;
  s *= attention_factor;
}

// HF rotate_half on the pair (x1, x2) = (x[i], x[i + head_dim / 2]) of bf16 values, in fp32 with
// one bf16 rounding: x1' = x1 c - x2 s, x2' = x2 c + x1 s. The products are spelled out so that
// the compiler cannot contract them differently in different kernels.
__device__ __forceinline__ void rope_rotate(std::uint16_t& x1, std::uint16_t& x2, float c, float s) {
  const float a = __bfloat162float(__ushort_as_bfloat16(x1)), b = __bfloat162float(__ushort_as_bfloat16(x2));
  x1 = __bfloat16_as_ushort(__float2bfloat16_rn(__fmaf_rn(a, c, -__fmul_rn(b, s))));
  x2 = __bfloat16_as_ushort(__float2bfloat16_rn(__fmaf_rn(b, c, __fmul_rn(a, s))));
}

}  // namespace specontext::kernels
