#pragma once
// CPU reference of kernels/add_rmsnorm (and of kernels/head_rmsnorm's per-vector norm).
#include <cstdint>
#include <vector>

namespace specontext::ref {

// residual fp32 [tokens, hidden] += delta bf16 [tokens, hidden] (empty: no add); returns
// out bf16 [tokens, hidden] = bf16(weight * bf16(residual * 1/sqrt(mean(residual^2) + eps))).
std::vector<std::uint16_t> add_rmsnorm(std::vector<float>& residual, const std::vector<std::uint16_t>& delta,
                                       const std::vector<std::uint16_t>& weight, std::int64_t tokens, std::int64_t hidden, float eps);

// One vector x [n] (fp32 values) normalised as above into out bf16 [n].
void rmsnorm_vector(const float* x, const std::uint16_t* weight, std::int64_t n, float eps, std::uint16_t* out);

}  // namespace specontext::ref
