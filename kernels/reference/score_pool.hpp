#pragma once
// Pooling of the retrieval head's scores before top-B (engine/retrieval_head.hpp), and the CPU
// reference of kernels/score_pool. PAPER.md §1.5 finds no pooling or window in the paper, so the
// default is none; we measured that a neighbourhood of a few positions, and a forced recent window,
// raise the LLM attention a selection captures (models/smollm2-eagle3/README.md): attention comes
// in runs of adjacent tokens, and the draft's keys are one token off the LLM's (alignment "next").
//
// Over one row of scores for LLM positions 0..n-1 (position 0 the pinned sink, +inf):
//   out[0]  = in[0];
//   out[p]  = max (kind max) or mean (kind mean) of in[q] for q in [max(1, p - radius), min(n - 1, p + radius)],
//             for 1 <= p < n (the sink never enters a window, so +inf does not spread), the mean
//             summed in float in ascending q and divided once (the kernel does the same);
//   out[p]  = +inf for max(1, n - recent) <= p < n: the most recent positions are always kept.
// Kind none with recent 0 is the identity.
#include <cstdint>

namespace specontext {

enum class ScorePoolKind { None, Max, Mean };

struct ScorePooling {
  ScorePoolKind kind = ScorePoolKind::None;
  int radius = 0;            // positions on each side; 0 with kind none
  std::int64_t recent = 0;   // most recent positions forced in
  static constexpr int kMaxRadius = 64;
  bool active() const { return (kind != ScorePoolKind::None && radius > 0) || recent > 0; }
  bool valid() const { return radius >= 0 && radius <= kMaxRadius && recent >= 0; }  // what the kernel can run
};

namespace ref {

// One row: in and out hold n >= 0 scores and must not overlap.
void score_pool_row(const float* in, float* out, std::int64_t n, const ScorePooling& pooling);

}  // namespace ref
}  // namespace specontext
