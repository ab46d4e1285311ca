#pragma once
// bf16 on the host for the kernels' CPU references: storage as uint16 bit patterns,
// conversion with round-to-nearest-even, the same rounding the GPU applies.
#include <cstdint>
#include <cstring>

namespace specontext::ref {

inline float bf16_to_float(std::uint16_t b) {
  std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// Rounds a float through bf16 (what storing and reloading does).
inline float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

}  // namespace specontext::ref
