#pragma once
// CPU reference of kernels/attention_scores: per request and query head the exact softmax over
// the request's keys of scale * q . k_j, then the max or mean over the query heads of each output
// row; naive loops, bf16 inputs widened to float and every sum taken in double. Same layout and
// column conventions as the kernel (see attention_scores.cuh), with host pointers.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct AttentionScoresParams {
  enum class Reduce { Max, Mean };

  const std::uint16_t* q = nullptr;  // bf16 [requests, q_row_stride]
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;  // bf16 [max_requests][kv_heads][max_context][head_dim]
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;    // [requests]
  const std::int32_t* lengths = nullptr;  // [requests]
  int length_offset = 0;  // request i has clamp(lengths[i] + length_offset, 0, limit) keys
  int requests = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;     // any positive value (the kernel supports 32, 64, 128)
  int max_context = 0;  // the clamp's limit ...
  int max_length = 0;   // ... or this one when positive and smaller
  float scale = 0.0f;
  Reduce reduce = Reduce::Max;
  bool all_heads = false;  // one row over every query head instead of one per KV head
  std::int64_t out_stride = 0;  // >= max_context + column_offset
  int column_offset = 0;        // columns 0 .. column_offset - 1 are +inf
  bool pin_last = false;        // the last key's column is +inf
};

// Keys request i scores: lengths[i] + length_offset clamped to [0, max_context] (and to
// max_length when that is positive).
int attention_scores_keys(const AttentionScoresParams& p, int request);

// fp32 [requests][out_rows][out_stride], out_rows = all_heads ? 1 : kv_heads. Row (i, g) holds,
// at column column_offset + j for each key j < keys(i), max_h or mean_h of softmax_j(scale *
// q_i,h . k_j) over its query heads h (those with h / (q_heads / kv_heads) == g, or all of them);
// columns 0 .. column_offset - 1 hold +inf, and with pin_last so does the last key's column. The
// columns the kernel leaves untouched (from column_offset + keys(i) on) hold NaN.
std::vector<float> attention_scores(const AttentionScoresParams& p);

}  // namespace specontext::ref
