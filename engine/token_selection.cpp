#include "engine/token_selection.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace specontext {
namespace {

// The `count` best positions of one row, ascending.
void top_of_row(const float* row, std::int64_t positions, std::int64_t count, std::int32_t* out) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(positions));
  std::iota(order.begin(), order.end(), 0);
  // A strict weak order (NaNs were rejected): score descending, then position ascending.
  auto better = [row](std::int32_t a, std::int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  std::nth_element(order.begin(), order.begin() + count - 1, order.end(), better);
  std::sort(order.begin(), order.begin() + count);
  std::copy(order.begin(), order.begin() + count, out);
}

}  // namespace

TokenSelection select_top_b(std::span<const float> scores, int kv_heads, std::int64_t positions, std::int64_t budget,
                            SelectionLevel level) {
  if (kv_heads < 1 || positions < 1)
    throw std::invalid_argument("select_top_b: need at least one head and one position, got " + std::to_string(kv_heads) + " and " +
                                std::to_string(positions));
  if (static_cast<std::int64_t>(scores.size()) != kv_heads * positions)
    throw std::invalid_argument("select_top_b: " + std::to_string(scores.size()) + " scores for " + std::to_string(kv_heads) +
                                " heads x " + std::to_string(positions) + " positions");
  if (budget < 1) throw std::invalid_argument("select_top_b: the budget must be at least 1, got " + std::to_string(budget));
  if (positions > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument("select_top_b: " + std::to_string(positions) + " positions do not fit 32-bit indices");
  if (std::any_of(scores.begin(), scores.end(), [](float s) { return std::isnan(s); }))
    throw std::invalid_argument("select_top_b: a score is NaN");

  TokenSelection sel;
  sel.kv_heads = kv_heads;
  sel.count = std::min(budget, positions);
  sel.indices.resize(static_cast<std::size_t>(kv_heads * sel.count));
  if (level == SelectionLevel::Head) {
    for (int g = 0; g < kv_heads; ++g) top_of_row(scores.data() + g * positions, positions, sel.count, sel.indices.data() + g * sel.count);
    return sel;
  }
  std::vector<float> any_head(scores.begin(), scores.begin() + positions);
  for (int g = 1; g < kv_heads; ++g)
    for (std::int64_t p = 0; p < positions; ++p) any_head[p] = std::max(any_head[p], scores[g * positions + p]);
  top_of_row(any_head.data(), positions, sel.count, sel.indices.data());
  for (int g = 1; g < kv_heads; ++g) std::copy_n(sel.indices.begin(), sel.count, sel.indices.begin() + g * sel.count);
  return sel;
}

}  // namespace specontext
