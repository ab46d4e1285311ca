#pragma once
// Choosing the next token from logits on the host: greedy, or temperature with top-p
// (nucleus). Also the CPU reference of the CUDA sampling kernel.
#include <cstdint>
#include <vector>

#include "engine/backend.hpp"

namespace specontext {

// Greedy: the first index of the maximum. Otherwise softmax(logits / T), keep every token at
// least as probable as the last one needed (in descending order) to reach top_p, and walk the
// kept tokens in index order to the draw u in [0, 1) (the caller's; see sampling_uniform) —
// exactly what the CUDA kernel does (kernels/reference/sample.hpp).
int sample_token(const float* logits, std::int64_t vocab, const SamplingParams& p, double u);

// The uniform draw of request r at step `step` of a run seeded `seed` (splitmix64; the same
// on CPU and GPU).
double sampling_uniform(std::uint64_t seed, std::int64_t step, int request);

}  // namespace specontext
