#include "kernels/reference/decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

void attend_one(const std::uint16_t* q, const std::uint16_t* k, const std::uint16_t* v, int length, int head_dim,
                float scale, float* out) {
  std::fill(out, out + head_dim, 0.0f);
  if (length <= 0) return;
  std::vector<double> s(static_cast<std::size_t>(length));
  double mx = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < length; ++j) {
    double dot = 0;
    const std::uint16_t* kj = k + static_cast<std::int64_t>(j) * head_dim;
    for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(bf16_to_float(q[d])) * bf16_to_float(kj[d]);
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  std::vector<double> acc(static_cast<std::size_t>(head_dim), 0.0);
  for (int j = 0; j < length; ++j) {
    const double w = std::exp(s[j] - mx);
    sum += w;
    const std::uint16_t* vj = v + static_cast<std::int64_t>(j) * head_dim;
    for (int d = 0; d < head_dim; ++d) acc[d] += w * bf16_to_float(vj[d]);
  }
  for (int d = 0; d < head_dim; ++d) out[d] = static_cast<float>(acc[d] / sum);
}

std::vector<float> decode_attention(const DecodeAttentionParams& p) {
  const std::int64_t width = static_cast<std::int64_t>(p.q_heads) * p.head_dim;
  std::vector<float> out(static_cast<std::size_t>(p.requests * width), 0.0f);
  const int group = p.q_heads / p.kv_heads;
  const std::int64_t hd = p.head_dim;
  std::vector<std::uint16_t> k_rows, v_rows;  // sparse: the listed rows of one (request, KV head)
  for (int i = 0; i < p.requests; ++i) {
    for (int g = 0; g < p.kv_heads; ++g) {
      const std::int64_t cache = p.slots[i] * p.kv_request_stride + g * p.kv_head_stride;
      const std::uint16_t* k = p.k_cache + cache;
      const std::uint16_t* v = p.v_cache + cache;
      int length = 0;
      if (p.indices == nullptr) {
        length = p.lengths[i];
      } else {
        length = std::max(0, p.index_counts[i * p.count_request_stride + g * p.count_head_stride]);
        const std::int32_t* list = p.indices + i * p.index_request_stride + g * p.index_head_stride;
        k_rows.resize(static_cast<std::size_t>(length * hd));
        v_rows.resize(k_rows.size());
        for (std::int64_t j = 0; j < length; ++j) {
          std::copy_n(k + list[j] * hd, hd, k_rows.begin() + j * hd);
          std::copy_n(v + list[j] * hd, hd, v_rows.begin() + j * hd);
        }
        k = k_rows.data();
        v = v_rows.data();
      }
      for (int h = g * group; h < (g + 1) * group; ++h)
        attend_one(p.q + i * p.q_row_stride + static_cast<std::int64_t>(h) * p.head_dim, k, v, length, p.head_dim, p.scale,
                   out.data() + i * width + static_cast<std::int64_t>(h) * p.head_dim);
    }
  }
  return out;
}

}  // namespace specontext::ref
