#pragma once
// CPU reference of kernels/top_b_select: per row, sort the valid positions by (score descending,
// position ascending) and keep the first `budget`, ascending. Same layout as the kernel (see
// top_b_select.cuh), with host pointers; rows come back as vectors of exactly counts[r] entries.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct TopBSelectParams {
  const float* scores = nullptr;  // [rows, score_stride]
  std::int64_t score_stride = 0;
  const std::int32_t* lengths = nullptr;  // [rows / rows_per_request]
  int length_offset = 0;
  int rows = 0;
  int rows_per_request = 1;
  int max_positions = 0;  // valid counts are clamped to [0, max_positions]
  int budget = 0;         // >= 1
  bool ensure_last = false;
};

// Row r's valid count: clamp(length + length_offset, 0, max_positions), in 64-bit arithmetic.
int top_b_valid_count(std::int32_t length, int length_offset, int max_positions);

// True when score a ranks strictly above score b: a > b for numbers (so -0.0 and +0.0 tie), and
// NaN ranks below every number (NaNs tie with each other).
bool top_b_ranks_above(float a, float b);

// The positions of the min(budget, n) best of scores[0 .. n - 1] (ties: the lower position),
// ascending; with ensure_last and n >= 1, position n - 1 appended when it was not chosen.
std::vector<std::int32_t> top_b_row(const float* scores, int n, int budget, bool ensure_last);

// top_b_row of every row: row r has top_b_valid_count(lengths[r / rows_per_request], ...)
// positions.
std::vector<std::vector<std::int32_t>> top_b_select(const TopBSelectParams& p);

}  // namespace specontext::ref
