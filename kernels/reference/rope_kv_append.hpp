#pragma once
// CPU reference of kernels/rope_kv_append.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct RopeKvShape {
  std::int64_t tokens = 0, row_stride = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  std::int64_t cache_request_stride = 0, cache_head_stride = 0;  // elements
  float attention_factor = 1.0f;
  std::int32_t cache_row = -1;  // >= 0: every token's K/V goes to this row instead of its position
};

// qkv bf16 [tokens, row_stride] rotated in place (q and k heads); k_cache / v_cache bf16
// [max_requests][kv_heads][max_context][head_dim] (strides in `s`) written at
// [slots[t]][h][positions[t] (or s.cache_row)][:]; an empty v_cache writes no V. The same formulas
// as the kernel (rope_kv_append.cuh).
void rope_kv_append(std::vector<std::uint16_t>& qkv, std::vector<std::uint16_t>& k_cache, std::vector<std::uint16_t>& v_cache,
                    const std::vector<float>& inv_freq, const std::vector<std::int32_t>& positions, const std::vector<std::int32_t>& slots,
                    const RopeKvShape& s);

// One head vector x [head_dim] (fp32 values) rotated to position `pos` and rounded to bf16.
void rope_vector(const float* x, std::int64_t head_dim, const float* inv_freq, std::int32_t pos, float attention_factor, std::uint16_t* out);

}  // namespace specontext::ref
