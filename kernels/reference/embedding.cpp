#include "kernels/reference/embedding.hpp"

namespace specontext::ref {

std::vector<std::uint16_t> embedding(const std::vector<std::uint16_t>& table, std::int64_t vocab, std::int64_t hidden,
                                     const std::vector<std::int32_t>& ids) {
  std::vector<std::uint16_t> out(ids.size() * static_cast<std::size_t>(hidden), 0);
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const std::int64_t id = ids[t];
    if (id < 0 || id >= vocab) continue;
    for (std::int64_t j = 0; j < hidden; ++j) out[t * hidden + j] = table[id * hidden + j];
  }
  return out;
}

}  // namespace specontext::ref
