#pragma once
// CPU reference of kernels/add_bias.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// In place on x bf16 [tokens, row_stride]: x[t, c] = bf16(x[t, c] + bias[c]) for c < cols.
void add_bias(std::vector<std::uint16_t>& x, std::int64_t tokens, std::int64_t cols, std::int64_t row_stride, const std::vector<std::uint16_t>& bias);

}  // namespace specontext::ref
