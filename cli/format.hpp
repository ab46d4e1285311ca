#pragma once
// Readable numbers for tables: GB (10^9) with two decimals, ms, tokens/s.
#include <cstdio>
#include <string>

namespace specontext::cli {

inline std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
inline std::string gb(double bytes) { return fixed(bytes / 1e9, 2) + " GB"; }
inline std::string mb(double bytes) { return fixed(bytes / 1e6, 2) + " MB"; }

}  // namespace specontext::cli
