#pragma once
// The arithmetic kernels/sample and its CPU reference share, written once for host and device so
// both produce the same bits: an exp built only from correctly rounded IEEE operations (fmul,
// floor, fsub, fma and an exact power-of-two scale; the libraries' expf differ in the last ulp
// between CPU and GPU), and token weights in 2^-40 fixed point, so every sum the sampler takes
// is an exact integer sum whose value does not depend on the order of the reduction.
#include <cmath>
#include <cstdint>
#include <cstring>

#ifndef SPECONTEXT_HD
#if defined(__CUDACC__)
#define SPECONTEXT_HD __host__ __device__ __forceinline__
#else
#define SPECONTEXT_HD inline
#endif
#endif

namespace specontext::sampling_math {

// One unit of weight is 2^-40 of the most probable token's weight (which is about 1.0).
constexpr float kWeightScale = 1099511627776.0f;  // 2^40

SPECONTEXT_HD std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

SPECONTEXT_HD float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Rounded IEEE operations that nvcc may not contract into an fma.
SPECONTEXT_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SPECONTEXT_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SPECONTEXT_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
SPECONTEXT_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
SPECONTEXT_HD double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// exp(x) for x <= 0 to about 2e-7 relative (x * log2(e) rounds first, so about 1e-6 near
// x = -44); 0 below 2^-64. 2^t = 2^n * sqrt(2) * 2^g with g = t - n - 1/2 in [-1/2, 1/2),
// the last factor by its Taylor polynomial of degree 6.
SPECONTEXT_HD float exp_nonpositive(float x) {
  const float t = mul_rn(x, 1.44269504088896341f);
  if (!(t >= -64.0f)) return 0.0f;  // also -inf and NaN
#if defined(__CUDA_ARCH__)
  const float n = floorf(t);
#else
  const float n = std::floor(t);
#endif
  const float g = sub_rn(sub_rn(t, n), 0.5f);
  float p = 0.00021783881590746446f;
  p = fma_rn(p, g, 0.0018856498765369369f);
  p = fma_rn(p, g, 0.013602088628663626f);
  p = fma_rn(p, g, 0.07849466324122069f);
  p = fma_rn(p, g, 0.3397315841830749f);
  p = fma_rn(p, g, 0.9802581434685472f);
  p = fma_rn(p, g, 1.4142135623730951f);
  const int e = static_cast<int>(n);  // -64..0
  return mul_rn(p, bits_float(static_cast<std::uint32_t>(e + 127) << 23));  // exact: a power of two
}

// The unnormalised probability exp((logit - max) / T), T > 0, max the row's (finite) maximum.
SPECONTEXT_HD float token_prob(float logit, float max_logit, float temperature) {
  return exp_nonpositive(div_rn(sub_rn(logit, max_logit), temperature));
}

// Its weight in 2^-40 units, truncated: at most 2^40 + a little.
SPECONTEXT_HD std::uint64_t token_weight(float prob) { return static_cast<std::uint64_t>(mul_rn(prob, kWeightScale)); }

// The mass the kept set must reach: top_p of the total, at least one unit (so the most probable
// token alone is kept when top_p <= 0). Only meaningful for top_p < 1 (>= 1 keeps every token).
SPECONTEXT_HD std::uint64_t top_p_target(float top_p, std::uint64_t total) {
  const double want = dmul_rn(static_cast<double>(top_p), static_cast<double>(total));
  const std::uint64_t t = want > 0.0 ? static_cast<std::uint64_t>(want) : 0;
  return t < 1 ? 1 : t;
}

// Where u in [0, 1) falls in the kept mass: the draw returns the first kept token (in index
// order) whose running weight exceeds this. Clamped below kept_mass so it always lands.
SPECONTEXT_HD std::uint64_t draw_point(float u, std::uint64_t kept_mass) {
  const double x = dmul_rn(static_cast<double>(u), static_cast<double>(kept_mass));
  std::uint64_t r = x > 0.0 ? static_cast<std::uint64_t>(x) : 0;
  return r < kept_mass ? r : kept_mass - 1;
}

}  // namespace specontext::sampling_math
