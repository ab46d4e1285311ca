#pragma once
// Top-B token selection over per-KV-head scores (PAPER.md §1.4–1.6): head-level, a set per KV head,
// or batch-level, one set for every head from the element-wise max over the heads (the paper's
// ablation). Plain token-level top-B, as in the paper (§1.5 finds no pooling or window); the retrieval
// head may pool its scores first (kernels/reference/score_pool.hpp, --head-pool / --head-recent).
#include <cstdint>
#include <span>
#include <vector>

namespace specontext {

enum class SelectionLevel { Head, Batch };

// The positions each KV head attends to in one decode step: per head `count` = min(budget,
// positions) indices, ascending. Batch-level selection repeats its one set in every head's row, so
// that attention reads the same shape either way (the paper's index tensor [batch, 1, heads, B]).
struct TokenSelection {
  int kv_heads = 0;
  std::int64_t count = 0;
  std::vector<std::int32_t> indices;  // [kv_heads, count]
  std::span<const std::int32_t> head(int kv_head) const {
    return {indices.data() + static_cast<std::size_t>(kv_head) * static_cast<std::size_t>(count), static_cast<std::size_t>(count)};
  }
};

// scores [kv_heads, positions] row-major (higher is more important; +inf forces a position in) ->
// the top-`budget` positions per row (head-level) or of the rows' element-wise max (batch-level).
// Equal scores go to the lower position, so the result is deterministic; budget >= positions keeps
// every position. Throws std::invalid_argument for a budget < 1, a size mismatch or a NaN score.
TokenSelection select_top_b(std::span<const float> scores, int kv_heads, std::int64_t positions, std::int64_t budget,
                            SelectionLevel level);

}  // namespace specontext
