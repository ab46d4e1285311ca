#include "kernels/reference/rope_kv_append.hpp"

#include <cmath>
#include <stdexcept>

#include "kernels/reference/bf16.hpp"

namespace specontext::ref {

void rope_vector(const float* x, std::int64_t head_dim, const float* inv_freq, std::int32_t pos, float attention_factor, std::uint16_t* out) {
  const std::int64_t half = head_dim / 2;
  for (std::int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];  // one fp32 rounding, as torch
    const float c = std::cos(angle) * attention_factor, s = std::sin(angle) * attention_factor;
    const float x1 = x[i], x2 = x[i + half];
    out[i] = float_to_bf16(x1 * c - x2 * s);
    out[i + half] = float_to_bf16(x2 * c + x1 * s);
  }
}

void rope_kv_append(std::vector<std::uint16_t>& qkv, std::vector<std::uint16_t>& k_cache, std::vector<std::uint16_t>& v_cache,
                    const std::vector<float>& inv_freq, const std::vector<std::int32_t>& positions, const std::vector<std::int32_t>& slots,
                    const RopeKvShape& s) {
  if (s.head_dim % 2 != 0) throw std::invalid_argument("ref::rope_kv_append: head_dim must be even");
  std::vector<float> x(static_cast<std::size_t>(s.head_dim));
  for (std::int64_t t = 0; t < s.tokens; ++t) {
    std::uint16_t* row = qkv.data() + t * s.row_stride;
    const std::int64_t cache_base = static_cast<std::int64_t>(slots[t]) * s.cache_request_stride + static_cast<std::int64_t>(s.cache_row >= 0 ? s.cache_row : positions[t]) * s.head_dim;
    for (std::int64_t h = 0; h < s.q_heads + s.kv_heads; ++h) {
      std::uint16_t* head = row + h * s.head_dim;
      for (std::int64_t i = 0; i < s.head_dim; ++i) x[i] = bf16_to_float(head[i]);
      rope_vector(x.data(), s.head_dim, inv_freq.data(), positions[t], s.attention_factor, head);
      if (h >= s.q_heads)
        for (std::int64_t i = 0; i < s.head_dim; ++i) k_cache[cache_base + (h - s.q_heads) * s.cache_head_stride + i] = head[i];
    }
    if (v_cache.empty()) continue;
    const std::uint16_t* v = row + (s.q_heads + s.kv_heads) * s.head_dim;
    for (std::int64_t h = 0; h < s.kv_heads; ++h)
      for (std::int64_t i = 0; i < s.head_dim; ++i) v_cache[cache_base + h * s.cache_head_stride + i] = v[h * s.head_dim + i];
  }
}

}  // namespace specontext::ref
