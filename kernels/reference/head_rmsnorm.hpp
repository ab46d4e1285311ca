#pragma once
// CPU reference of kernels/head_rmsnorm.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// In place on x bf16 [tokens, row_stride]: the `heads` vectors of head_dim starting at column
// `col0` of each row, each normalised by ref::rmsnorm_vector with weight bf16 [head_dim].
void head_rmsnorm(std::vector<std::uint16_t>& x, std::int64_t tokens, std::int64_t row_stride, std::int64_t col0, std::int64_t heads,
                  std::int64_t head_dim, const std::vector<std::uint16_t>& weight, float eps);

}  // namespace specontext::ref
