#include "kernels/reference/prefill_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

// Written out on its own (not through decode_attention's attend_one) so that the test equating
// the two references compares two independent implementations.
std::vector<float> prefill_attention(const PrefillAttentionParams& p) {
  const std::int64_t width = static_cast<std::int64_t>(p.q_heads) * p.head_dim;
  std::vector<float> out(static_cast<std::size_t>(p.tokens * width), 0.0f);
  const int group = p.q_heads / p.kv_heads;
  std::vector<double> s, acc(static_cast<std::size_t>(p.head_dim));
  for (int t = 0; t < p.tokens; ++t) {
    if (p.slots[t] < 0 || p.positions[t] < 0) continue;
    const int keys = p.positions[t] + 1;
    s.assign(static_cast<std::size_t>(keys), 0.0);
    for (int h = 0; h < p.q_heads; ++h) {
      const std::uint16_t* q = p.q + t * p.q_row_stride + static_cast<std::int64_t>(h) * p.head_dim;
      const std::int64_t cache = p.slots[t] * p.kv_request_stride + (h / group) * p.kv_head_stride;
      double mx = -std::numeric_limits<double>::infinity();
      for (int j = 0; j < keys; ++j) {
        const std::uint16_t* k = p.k_cache + cache + static_cast<std::int64_t>(j) * p.head_dim;
        double dot = 0;
        for (int d = 0; d < p.head_dim; ++d) dot += static_cast<double>(bf16_to_float(q[d])) * bf16_to_float(k[d]);
        s[j] = dot * p.scale;
        mx = std::max(mx, s[j]);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      for (int j = 0; j < keys; ++j) {
        const std::uint16_t* v = p.v_cache + cache + static_cast<std::int64_t>(j) * p.head_dim;
        const double w = std::exp(s[j] - mx);
        sum += w;
        for (int d = 0; d < p.head_dim; ++d) acc[d] += w * bf16_to_float(v[d]);
      }
      float* o = out.data() + t * width + static_cast<std::int64_t>(h) * p.head_dim;
      for (int d = 0; d < p.head_dim; ++d) o[d] = static_cast<float>(acc[d] / sum);
    }
  }
  return out;
}

}  // namespace specontext::ref
