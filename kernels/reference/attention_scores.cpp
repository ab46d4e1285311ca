#include "kernels/reference/attention_scores.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

int attention_scores_keys(const AttentionScoresParams& p, int request) {
  const std::int64_t limit = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  const std::int64_t n = static_cast<std::int64_t>(p.lengths[request]) + p.length_offset;
  return static_cast<int>(std::clamp<std::int64_t>(n, 0, std::max<std::int64_t>(limit, 0)));
}

std::vector<float> attention_scores(const AttentionScoresParams& p) {
  const int out_rows = p.all_heads ? 1 : p.kv_heads;
  const int group = p.q_heads / p.kv_heads;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> out(static_cast<std::size_t>(p.requests) * out_rows * p.out_stride, std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < p.requests; ++i) {
    const int keys = attention_scores_keys(p, i);
    // probs[h][j]: each query head's softmax over the request's keys.
    std::vector<std::vector<double>> probs(static_cast<std::size_t>(p.q_heads), std::vector<double>(static_cast<std::size_t>(keys)));
    for (int h = 0; h < p.q_heads; ++h) {
      const std::uint16_t* q = p.q + i * p.q_row_stride + static_cast<std::int64_t>(h) * p.head_dim;
      const std::uint16_t* k = p.k_cache + p.slots[i] * p.kv_request_stride + (h / group) * p.kv_head_stride;
      std::vector<double>& s = probs[h];
      double mx = -std::numeric_limits<double>::infinity();
      for (int j = 0; j < keys; ++j) {
        double dot = 0;
        const std::uint16_t* kj = k + static_cast<std::int64_t>(j) * p.head_dim;
        for (int d = 0; d < p.head_dim; ++d) dot += static_cast<double>(bf16_to_float(q[d])) * bf16_to_float(kj[d]);
        s[j] = dot * p.scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (int j = 0; j < keys; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (int j = 0; j < keys; ++j) s[j] /= sum;
    }
    for (int row = 0; row < out_rows; ++row) {
      float* o = out.data() + (static_cast<std::int64_t>(i) * out_rows + row) * p.out_stride;
      const int h0 = p.all_heads ? 0 : row * group, nh = p.all_heads ? p.q_heads : group;
      for (int c = 0; c < p.column_offset; ++c) o[c] = inf;
      for (int j = 0; j < keys; ++j) {
        double v = 0;  // probabilities are >= 0, so 0 also starts the max
        for (int h = h0; h < h0 + nh; ++h) v = p.reduce == AttentionScoresParams::Reduce::Max ? std::max(v, probs[h][j]) : v + probs[h][j];
        if (p.reduce == AttentionScoresParams::Reduce::Mean) v /= nh;
        o[p.column_offset + j] = static_cast<float>(v);
      }
      if (p.pin_last && keys > 0) o[p.column_offset + keys - 1] = inf;
    }
  }
  return out;
}

}  // namespace specontext::ref
