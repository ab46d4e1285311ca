#include "kernels/reference/add_bias.hpp"

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

void add_bias(std::vector<std::uint16_t>& x, std::int64_t tokens, std::int64_t cols, std::int64_t row_stride, const std::vector<std::uint16_t>& bias) {
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t c = 0; c < cols; ++c) {
      std::uint16_t& v = x[t * row_stride + c];
      v = float_to_bf16(bf16_to_float(v) + bf16_to_float(bias[c]));
    }
}

}  // namespace specontext::ref
