#pragma once
// splitmix64 and the normal draw built on it, shared verbatim by host and device code so that
// the CPU reference and the kernel produce the same numbers.
#include <cstdint>

#if defined(__CUDACC__)
#define SPECONTEXT_HD __host__ __device__ __forceinline__
#else
#define SPECONTEXT_HD inline
#endif

namespace specontext::rng {

SPECONTEXT_HD std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1]: 53 random bits, never 0 (so log() is finite).
SPECONTEXT_HD double uniform_open0(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

SPECONTEXT_HD float normal(std::uint64_t seed, std::int64_t index) {
  const std::uint64_t key = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(index)));
  const double u1 = uniform_open0(splitmix64(key)), u2 = uniform_open0(splitmix64(key + 1));
  // Box-Muller; double precision so host and device agree to the last float bit.
  return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

}  // namespace specontext::rng
