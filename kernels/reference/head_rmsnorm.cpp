#include "kernels/reference/head_rmsnorm.hpp"

#include <vector>

#include "kernels/reference/add_rmsnorm.hpp"
#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

void head_rmsnorm(std::vector<std::uint16_t>& x, std::int64_t tokens, std::int64_t row_stride, std::int64_t col0, std::int64_t heads,
                  std::int64_t head_dim, const std::vector<std::uint16_t>& weight, float eps) {
  std::vector<float> v(static_cast<std::size_t>(head_dim));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h) {
      std::uint16_t* p = x.data() + t * row_stride + col0 + h * head_dim;
      for (std::int64_t i = 0; i < head_dim; ++i) v[i] = bf16_to_float(p[i]);
      rmsnorm_vector(v.data(), weight.data(), head_dim, eps, p);
    }
}

}  // namespace specontext::ref
