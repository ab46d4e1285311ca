#pragma once
// Pooling of the retrieval head's scores before top_b_select (kernels/reference/score_pool.hpp has
// the semantics and the CPU reference): per row, each position's max or mean over its neighbours
// within `radius` (never the sink at position 0, which is copied), then the most recent `recent`
// positions forced to +inf. Out of place, in the row layout top_b_select reads.
//
// Shapes (device pointers):
//   in, out  fp32 [rows, score_stride]; only positions 0 .. n_r - 1 of a row are read and written,
//            n_r = clamp(lengths[r / rows_per_request], 0, max_positions)
//   lengths  int32 [rows / rows_per_request]
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/reference/score_pool.hpp"

namespace specontext::kernels {

struct ScorePoolParams {
  const float* in = nullptr;
  float* out = nullptr;  // must not overlap in
  std::int64_t score_stride = 0;  // >= max_positions
  const std::int32_t* lengths = nullptr;
  int rows = 0;  // 0 launches nothing; up to 65535
  int rows_per_request = 1;
  int max_positions = 0;  // host-side bound on every n_r: sizes the grid
  ScorePooling pooling;   // radius 0..ScorePooling::kMaxRadius, recent >= 0
};

// Checks the parameters (std::invalid_argument "score_pool: ...") and enqueues the kernel.
void launch_score_pool(const ScorePoolParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
