#pragma once
// CPU reference of kernels/small_gemm.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// Y[t, o] = sum_i X[t, i] * W[o, i], summed in double and returned as fp32 [tokens, out]
// (contiguous), before any bf16 rounding of the output. x bf16 [tokens, x_stride] (first `in`
// columns), w bf16 [out, in] contiguous.
std::vector<float> small_gemm(const std::vector<std::uint16_t>& x, const std::vector<std::uint16_t>& w, std::int64_t tokens, std::int64_t out,
                              std::int64_t in, std::int64_t x_stride);

}  // namespace specontext::ref
