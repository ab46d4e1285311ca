#include "kernels/reference/hbm_sweep.hpp"

namespace specontext::ref {

std::uint64_t xor_of_words(const std::vector<std::uint64_t>& words) {
  std::uint64_t x = 0;
  for (std::uint64_t w : words) x ^= w;
  return x;
}

}  // namespace specontext::ref
