#include "engine/quest_selection.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace specontext {

std::vector<float> quest_page_scores(const float* keys, std::int64_t positions, int kv_heads, int head_dim, const float* queries, int q_heads) {
  if (positions < 1 || kv_heads < 1 || head_dim < 1 || q_heads < kv_heads || q_heads % kv_heads != 0)
    throw std::invalid_argument("quest_selection: bad sizes");
  const int group = q_heads / kv_heads;
  const std::int64_t pages = (positions + kQuestPageSize - 1) / kQuestPageSize;
  const std::int64_t row = static_cast<std::int64_t>(kv_heads) * head_dim;
  std::vector<float> scores(static_cast<std::size_t>(kv_heads * pages), -std::numeric_limits<float>::infinity());
  std::vector<float> lo(static_cast<std::size_t>(head_dim)), hi(static_cast<std::size_t>(head_dim));
  for (int g = 0; g < kv_heads; ++g)
    for (std::int64_t page = 0; page < pages; ++page) {
      std::fill(lo.begin(), lo.end(), std::numeric_limits<float>::infinity());
      std::fill(hi.begin(), hi.end(), -std::numeric_limits<float>::infinity());
      const std::int64_t end = std::min(positions, (page + 1) * kQuestPageSize);
      for (std::int64_t p = page * kQuestPageSize; p < end; ++p)
        for (int d = 0; d < head_dim; ++d) {
          const float k = keys[p * row + g * head_dim + d];
          lo[d] = std::min(lo[d], k);
          hi[d] = std::max(hi[d], k);
        }
      float& best = scores[static_cast<std::size_t>(g * pages + page)];
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const float* q = queries + static_cast<std::int64_t>(h) * head_dim;
        float bound = 0;
        for (int d = 0; d < head_dim; ++d) bound += std::max(q[d] * lo[d], q[d] * hi[d]);
        best = std::max(best, bound);
      }
    }
  return scores;
}

QuestSelection quest_selection(const float* keys, std::int64_t positions, int kv_heads, int head_dim, const float* queries, int q_heads,
                               std::int64_t budget) {
  if (budget < 1) throw std::invalid_argument("quest_selection: the budget must be at least 1, got " + std::to_string(budget));
  const std::vector<float> scores = quest_page_scores(keys, positions, kv_heads, head_dim, queries, q_heads);
  const std::int64_t pages = (positions + kQuestPageSize - 1) / kQuestPageSize;
  QuestSelection out;
  const std::int64_t page_budget = (budget + kQuestPageSize - 1) / kQuestPageSize;
  out.pages = select_top_b(scores, kv_heads, pages, page_budget, SelectionLevel::Head);
  out.positions.resize(static_cast<std::size_t>(kv_heads));
  for (int g = 0; g < kv_heads; ++g)
    for (std::int32_t page : out.pages.head(g))
      for (std::int64_t p = page * kQuestPageSize; p < std::min(positions, (page + 1) * kQuestPageSize); ++p)
        out.positions[static_cast<std::size_t>(g)].push_back(static_cast<std::int32_t>(p));
  return out;
}

}  // namespace specontext
