#pragma once
// CPU reference of kernels/fill_random: the same counter-based normal draws.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// The normal draw of element `index` of a tensor seeded `seed` (Box-Muller over two
// splitmix64 uniforms), before bf16 rounding.
float random_normal(std::uint64_t seed, std::int64_t index);
std::vector<std::uint16_t> fill_random(std::int64_t count, std::uint64_t seed, float mean, float stddev);

}  // namespace specontext::ref
