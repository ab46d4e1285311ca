#include "kernels/reference/score_pool.hpp"

#include <algorithm>
#include <limits>

namespace specontext::ref {

void score_pool_row(const float* in, float* out, std::int64_t n, const ScorePooling& pooling) {
  if (n <= 0) return;
  out[0] = in[0];
  const std::int64_t r = pooling.kind == ScorePoolKind::None ? 0 : pooling.radius;
  for (std::int64_t p = 1; p < n; ++p) {
    const std::int64_t lo = std::max<std::int64_t>(1, p - r), hi = std::min(n - 1, p + r);
    float v = in[lo];
    if (pooling.kind == ScorePoolKind::Mean) {
      for (std::int64_t q = lo + 1; q <= hi; ++q) v += in[q];
      v /= static_cast<float>(hi - lo + 1);
    } else {
      for (std::int64_t q = lo + 1; q <= hi; ++q) v = std::max(v, in[q]);
    }
    out[p] = v;
  }
  for (std::int64_t p = std::max<std::int64_t>(1, n - pooling.recent); p < n; ++p) out[p] = std::numeric_limits<float>::infinity();
}

}  // namespace specontext::ref
