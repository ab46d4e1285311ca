#include "kernels/reference/small_gemm.hpp"

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

std::vector<float> small_gemm(const std::vector<std::uint16_t>& x, const std::vector<std::uint16_t>& w, std::int64_t tokens, std::int64_t out,
                              std::int64_t in, std::int64_t x_stride) {
  // X converted once: the tests call this with hundreds of millions of products.
  std::vector<double> xf(static_cast<std::size_t>(tokens * in));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t i = 0; i < in; ++i) xf[t * in + i] = bf16_to_float(x[t * x_stride + i]);
  std::vector<float> y(static_cast<std::size_t>(tokens * out));
  std::vector<double> row(static_cast<std::size_t>(in));
  for (std::int64_t o = 0; o < out; ++o) {
    for (std::int64_t i = 0; i < in; ++i) row[i] = bf16_to_float(w[o * in + i]);
    for (std::int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      for (std::int64_t i = 0; i < in; ++i) sum += xf[t * in + i] * row[i];
      y[t * out + o] = static_cast<float>(sum);
    }
  }
  return y;
}

}  // namespace specontext::ref
