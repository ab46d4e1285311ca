#pragma once
// A synthetic selection stream for benchmarks at the shapes of models we have no weights for:
// random weights make a retrieval head's choices nearly random, so the placement of what a step
// loads would not resemble a trained head's. Here every (request, KV head) list has exactly B past
// positions drawn uniformly from 0..t-1 (t the entering token, appended as the policies' lists do),
// and from one step to the next exactly round(overlap * B) of them stay (paper Fig. 6b's overlap of
// adjacent steps; the rest are positions the previous set did not hold; more stay only where fewer
// than that lie outside it), so elastic loading moves a stated number of rows per step.
#include <cstdint>
#include <vector>

namespace specontext {

struct SyntheticSelectionStream {
  int rows = 0, heads = 0, steps = 0;
  std::int64_t budget = 0;              // B; each list holds B + 1 entries (B past positions and t)
  double overlap = 0;                   // the stated overlap of adjacent steps
  double achieved_overlap = 0;          // measured as OverlapMeter does (higher where t is barely > B)
  std::vector<std::int32_t> lists;      // [steps][rows][heads][B + 1], ascending
  std::vector<std::int32_t> counts;     // [steps][rows][heads]: B + 1, or t + 1 while t <= B
  std::int64_t list_stride() const { return budget + 1; }
};

// Row i's entering token at step s is at position first_positions[i] + s (>= 1); while t <= B the list
// is every position. Throws std::invalid_argument for an overlap outside [0, 1] or bad sizes.
SyntheticSelectionStream make_synthetic_selection(const std::vector<std::int64_t>& first_positions, int heads, std::int64_t budget,
                                                  double overlap, int steps, std::uint64_t seed);

}  // namespace specontext
