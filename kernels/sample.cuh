#pragma once
// Choosing the next token of each row on the GPU: greedy, or temperature with top-p, exactly as
// ref::sample_row (kernels/reference/sample.hpp) defines it, token for token: the probabilities
// come from sampling_math's bit-reproducible exp and are summed as 2^-40 fixed-point integers,
// so no sum depends on the reduction order.
//
// One block of 1024 threads per row. Greedy: one pass (first index of the maximum). Sampling:
// the maximum; the top-p threshold τ by a radix select on the bit pattern of the (non-negative
// float) probability, 11 + 10 + 10 bits in three passes, each a shared-memory histogram of
// weight per digit and a block scan from the top digit down; then per-warp sums of the kept
// weight over 32 contiguous segments of the row, and the one warp whose segment holds the
// draw point walks it in index order. Every pass re-reads the row (from L2) and recomputes the
// probabilities; no workspace.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct SampleParams {
  const float* logits = nullptr;    // [rows, row_stride] fp32, the first `vocab` columns; no NaN
  const float* uniforms = nullptr;  // [rows] u in [0, 1), the caller's draws (unused when greedy)
  std::int32_t* out = nullptr;      // [rows] token ids
  std::int64_t rows = 0;
  std::int64_t vocab = 0;       // 1 .. 2^31 - 1
  std::int64_t row_stride = 0;  // elements, >= vocab
  float temperature = 0.0f;     // <= 0: greedy
  float top_p = 1.0f;           // >= 1: no truncation; <= 0: only the most probable token(s)
};

void launch_sample(const SampleParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
