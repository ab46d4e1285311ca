#pragma once
// Quest's page selection on the GPU (Tang et al., ICML 2024; the CPU reference is
// engine/quest_selection.hpp): a layer's keys are cut into pages of kQuestPageSize positions, each
// page keeps the element-wise min and max of its keys, and a decode query scores a page by the upper
// bound of q.k over it, sum_d max(q_d min_d, q_d max_d), maxed over the query heads of the KV head's
// group. top_b_select then picks the best pages per (request, KV head), and quest_expand_pages turns
// them into the position lists decode attention reads.
//
// Why page summaries are kept rather than recomputed: Quest's point is that a step reads 1/8 of the
// keys' bytes (min and max per 16 keys) instead of all of them. Keys only ever get appended, so a
// page whose 16 positions are all cached never changes: `summarised[slot]` counts those, and a step
// (re)computes only the pages from there to the last one (the current, possibly partial page; after
// a prefill, every page of the prompt once). The score kernel, which runs after the bound kernel on
// the same stream, advances `summarised`, so both launches fit in one CUDA graph with no host step.
//
// Shapes (bf16 tensors are std::uint16_t bit patterns; every pointer on the device):
//   q         [requests, q_row_stride]; query head h of row i at q[i * q_row_stride + h * head_dim ..]
//             (after RoPE), as in decode attention
//   k_cache   element (slot, kv_head, key, d) at slot * kv_request_stride + kv_head * kv_head_stride
//             + key * head_dim + d (after RoPE)
//   slots     int32 [requests]: cache row of row i; lengths int32 [requests]: keys 0 .. lengths[i] - 1
//             are cached (the entering token's included), clamped to [0, max_context]
//   bounds    bf16, element (slot, kv_head, page, m, d) at slot * bounds_request_stride + kv_head *
//             bounds_head_stride + (page * 2 + m) * head_dim + d, m = 0 the min, 1 the max; holds
//             ceil(max_context / kQuestPageSize) pages per (slot, KV head)
//   summarised int32 [max slots]: pages of each slot whose bounds are final; 0 for a fresh request
//   scores    fp32 [requests][kv_heads][score_stride]: column p the bound of page p, p < pages(i) =
//             ceil(lengths[i] / kQuestPageSize); later columns are not written
//   page_counts int32 [requests]: pages(i), for top_b_select's lengths
// head_dim is 32, 64 or 128; group = q_heads / kv_heads with group * head_dim <= 12,288.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

constexpr int kQuestPageSize = 16;

struct QuestPageScoresParams {
  const std::uint16_t* q = nullptr;
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;
  const std::int32_t* lengths = nullptr;
  int requests = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_context = 0;
  // Host-side bound on every length (0: max_context): sizes the grids.
  int max_length = 0;
  std::uint16_t* bounds = nullptr;
  std::int64_t bounds_request_stride = 0;
  std::int64_t bounds_head_stride = 0;  // >= 2 * head_dim * ceil(max_context / kQuestPageSize)
  std::int32_t* summarised = nullptr;
  float* scores = nullptr;
  std::int64_t score_stride = 0;  // >= ceil(max_length / kQuestPageSize)
  std::int32_t* page_counts = nullptr;
};

// Checks the parameters (std::invalid_argument "quest_pages: ...") and enqueues the bound update
// and the scoring kernels on `stream`.
void launch_quest_page_scores(const QuestPageScoresParams& p, cudaStream_t stream);

// Pages to positions: list (i, g) of `pages` (ascending page indices, page_counts entries) becomes
// every cached position of those pages, ascending, at positions[i * position_request_stride + g *
// position_head_stride ..], then lengths[i] - 1 (the entering token) when its page was not chosen;
// position_counts[i * kv_heads + g] gets the count. A page list of n pages needs n * 16 + 1 entries.
struct QuestExpandParams {
  const std::int32_t* pages = nullptr;
  std::int64_t page_request_stride = 0, page_head_stride = 0;
  const std::int32_t* page_counts = nullptr;  // [requests * kv_heads]
  const std::int32_t* lengths = nullptr;      // [requests]
  int requests = 0, kv_heads = 0;
  int max_pages = 0;  // host bound on every page count
  std::int32_t* positions = nullptr;
  std::int64_t position_request_stride = 0, position_head_stride = 0;  // head stride >= max_pages * 16 + 1
  std::int32_t* position_counts = nullptr;  // [requests * kv_heads]
};

void launch_quest_expand_pages(const QuestExpandParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
