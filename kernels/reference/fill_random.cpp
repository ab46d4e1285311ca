#include "kernels/reference/fill_random.hpp"

#include <cmath>

#include "kernels/random_hash.hpp"
#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

using std::cos;
using std::log;
using std::sqrt;

float random_normal(std::uint64_t seed, std::int64_t index) { return rng::normal(seed, index); }

std::vector<std::uint16_t> fill_random(std::int64_t count, std::uint64_t seed, float mean, float stddev) {
  std::vector<std::uint16_t> out(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) out[static_cast<std::size_t>(i)] = float_to_bf16(mean + stddev * rng::normal(seed, i));
  return out;
}

}  // namespace specontext::ref
