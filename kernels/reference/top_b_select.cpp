#include "kernels/reference/top_b_select.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace specontext::ref {

int top_b_valid_count(std::int32_t length, int length_offset, int max_positions) {
  const std::int64_t n = static_cast<std::int64_t>(length) + length_offset;
  return static_cast<int>(std::clamp<std::int64_t>(n, 0, max_positions));
}

bool top_b_ranks_above(float a, float b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return a > b;
}

std::vector<std::int32_t> top_b_row(const float* scores, int n, int budget, bool ensure_last) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(std::max(n, 0)));
  std::iota(order.begin(), order.end(), 0);
  const std::size_t count = std::min(order.size(), static_cast<std::size_t>(std::max(budget, 0)));
  // Best first: the higher rank, then the lower position (a strict weak order, NaN included).
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(), [scores](std::int32_t a, std::int32_t b) {
    if (top_b_ranks_above(scores[a], scores[b])) return true;
    if (top_b_ranks_above(scores[b], scores[a])) return false;
    return a < b;
  });
  order.resize(count);
  std::sort(order.begin(), order.end());
  if (ensure_last && n >= 1 && (order.empty() || order.back() != n - 1)) order.push_back(n - 1);
  return order;
}

std::vector<std::vector<std::int32_t>> top_b_select(const TopBSelectParams& p) {
  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(p.rows));
  for (int r = 0; r < p.rows; ++r) {
    const int n = top_b_valid_count(p.lengths[r / p.rows_per_request], p.length_offset, p.max_positions);
    out[r] = top_b_row(p.scores + r * p.score_stride, n, p.budget, p.ensure_last);
  }
  return out;
}

}  // namespace specontext::ref
