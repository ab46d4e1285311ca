#pragma once
// Quest's query-aware page selection (Tang et al., ICML 2024; PAPER.md's sparse baselines): the KV cache
// of a layer is cut into pages of 16 positions; each page keeps the element-wise min and max of its
// keys, and a query scores it by the upper bound of q·k over the page, sum_d max(q_d min_d, q_d max_d).
// Per KV head the ceil(B / 16) best pages are attended (every position they hold), each layer for
// itself. For GQA a page's score is the max over the group's query heads (Quest scores per head; with
// one set of pages per KV head the group's best is the bound that keeps every head's best page).
// Equal scores go to the lower page. The CPU reference runs it (CpuBackend::decode_sparse).
#include <cstdint>
#include <vector>

#include "engine/token_selection.hpp"

namespace specontext {

constexpr std::int64_t kQuestPageSize = 16;

struct QuestSelection {
  TokenSelection pages;                          // per KV head, ceil(B / 16) page indices (or every page), ascending
  std::vector<std::vector<std::int32_t>> positions;  // per KV head, the positions of those pages, ascending
};

// The page scores alone: [kv_heads][ceil(positions / 16)] row-major, page p of KV head g at
// g * pages + p (the CPU reference of kernels/quest_pages). Same arguments as quest_selection.
std::vector<float> quest_page_scores(const float* keys, std::int64_t positions, int kv_heads, int head_dim, const float* queries, int q_heads);

// keys: this layer's roped keys, [positions, kv_heads * head_dim] row-major; queries: the step's
// roped query heads, [q_heads * head_dim]. Throws std::invalid_argument for a budget < 1 or bad sizes.
QuestSelection quest_selection(const float* keys, std::int64_t positions, int kv_heads, int head_dim, const float* queries, int q_heads,
                               std::int64_t budget);

}  // namespace specontext
