#include "kernels/reference/add_rmsnorm.hpp"

#include <cmath>
#include <stdexcept>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

void rmsnorm_vector(const float* x, const std::uint16_t* weight, std::int64_t n, float eps, std::uint16_t* out) {
  double sq = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sq += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(sq / static_cast<double>(n));
  const float inv = 1.0f / std::sqrt(mean + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(bf16_to_float(weight[i]) * round_bf16(x[i] * inv));
}

std::vector<std::uint16_t> add_rmsnorm(std::vector<float>& residual, const std::vector<std::uint16_t>& delta,
                                       const std::vector<std::uint16_t>& weight, std::int64_t tokens, std::int64_t hidden, float eps) {
  const std::size_t n = static_cast<std::size_t>(tokens * hidden);
  if (residual.size() != n || (!delta.empty() && delta.size() != n) || weight.size() != static_cast<std::size_t>(hidden))
    throw std::invalid_argument("ref::add_rmsnorm: sizes do not match [tokens, hidden]");
  if (!delta.empty())
    for (std::size_t i = 0; i < n; ++i) residual[i] += bf16_to_float(delta[i]);
  std::vector<std::uint16_t> out(n);
  for (std::int64_t t = 0; t < tokens; ++t) rmsnorm_vector(residual.data() + t * hidden, weight.data(), hidden, eps, out.data() + t * hidden);
  return out;
}

}  // namespace specontext::ref
