#include "kernels/reference/swiglu.hpp"

#include <cmath>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

float silu(float g) { return g / (1.0f + std::exp(-g)); }

std::vector<std::uint16_t> swiglu(const std::vector<std::uint16_t>& gate_up, std::int64_t tokens, std::int64_t ffn, std::int64_t in_stride) {
  std::vector<std::uint16_t> out(static_cast<std::size_t>(tokens * ffn));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < ffn; ++j) {
      const float g = bf16_to_float(gate_up[t * in_stride + j]), u = bf16_to_float(gate_up[t * in_stride + ffn + j]);
      out[t * ffn + j] = float_to_bf16(round_bf16(silu(g)) * u);
    }
  return out;
}

}  // namespace specontext::ref
