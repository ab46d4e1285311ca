#pragma once
// CPU reference of kernels/embedding.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// out bf16 [tokens, hidden] = table bf16 [vocab, hidden] rows at ids [tokens]; an id outside
// [0, vocab) gives a zero row, as the kernel.
std::vector<std::uint16_t> embedding(const std::vector<std::uint16_t>& table, std::int64_t vocab, std::int64_t hidden,
                                     const std::vector<std::int32_t>& ids);

}  // namespace specontext::ref
