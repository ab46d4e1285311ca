#pragma once
// Top-B token selection on the GPU: per row of fp32 scores, the positions of the `budget`
// highest scores, ascending, exactly as specontext::select_top_b (engine/token_selection.hpp,
// head level) and ref::top_b_row (kernels/reference/top_b_select.hpp) choose them: higher is
// more important, +inf forces a position in, equal scores go to the LOWER position, -0.0 equals
// +0.0, and a row with n <= budget valid positions keeps all of them. NaN ranks below every
// other score (even -inf) and NaNs tie with each other; the CPU function rejects NaN, the kernel
// cannot (the scores never reach the host), so it gives NaN the lowest rank instead.
//
// One block of 1024 threads per row, sized for CUDA graphs: no host synchronisation, no
// allocation, no workspace; the grid depends only on `rows`, the shared memory only on
// `max_positions`. A radix select over an order-preserving uint32 image of the score (11 + 11 +
// 10 bits, shared-memory histograms) finds the B-th highest key and how many of its ties to
// take (the lowest positions among them); one ordered compaction pass then writes every
// position above it and the first `quota` ties, which is the ascending list directly.
//
// Shapes (every pointer on the device):
//   scores   fp32  [rows, score_stride]; row r's position j at scores[r * score_stride + j]; only
//                  positions 0 .. n_r - 1 are read (the rest may hold anything)
//   lengths  int32 [rows / rows_per_request]; row r belongs to request r / rows_per_request and
//                  has n_r = clamp(lengths[r / rows_per_request] + length_offset, 0, max_positions)
//                  valid positions (typically rows_per_request = KV heads, one row per head)
//   indices  int32 [rows, index_stride]; row r gets counts[r] ascending positions; entries past
//                  counts[r] are not written
//   counts   int32 [rows]; min(budget, n_r), plus 1 when ensure_last appended position n_r - 1
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct TopBSelectParams {
  const float* scores = nullptr;  // [rows, score_stride]
  std::int64_t score_stride = 0;  // elements, >= max_positions
  const std::int32_t* lengths = nullptr;  // [rows / rows_per_request]
  int length_offset = 0;  // added to every length (e.g. -1: the newest token is not a candidate)
  int rows = 0;           // requests * rows_per_request; 0 launches nothing
  int rows_per_request = 1;
  // Host-side bound on every valid count (lengths are clamped to it): sizes the launch, so the
  // score rows must hold at least this many columns. Up to 2^30.
  int max_positions = 0;
  int budget = 0;  // B >= 1, any size
  // After selecting, append position n - 1 (the newest valid one; n >= 1) when it was not chosen:
  // count B + 1. n - 1 is the largest position, so the row stays ascending either way.
  bool ensure_last = false;
  std::int32_t* indices = nullptr;  // [rows, index_stride]
  std::int64_t index_stride = 0;    // >= budget + (ensure_last ? 1 : 0)
  std::int32_t* counts = nullptr;   // [rows]
};

// Checks the parameters (std::invalid_argument "top_b_select: ...", before any CUDA call) and
// enqueues the kernel on `stream`. The first call on a device also raises the kernel's shared
// memory limit (cudaFuncSetAttribute, not a stream operation), so it may run during capture.
void launch_top_b_select(const TopBSelectParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
