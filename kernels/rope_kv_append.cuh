#pragma once
// RoPE on the new tokens' q and k, and the KV-cache append, in one pass over the fused QKV
// buffer. For each token t (position pos = positions[t], cache row slot = slots[t]):
//   angle_i = float(pos) * inv_freq[i]   (fp32, as HF), c_i = cos(angle_i) * attention_factor,
//   s_i = sin(angle_i) * attention_factor, i < head_dim / 2;
//   each q and k head, HF rotate_half pairing (i, i + head_dim/2), in place:
//     x1' = x1 c - x2 s,  x2' = x2 c + x1 s   (fp32, one bf16 rounding);
//   k_cache[slot][h][row][:] = rotated k of KV head h, v_cache[slot][h][row][:] = v of head h,
//   with row = pos, or cache_row for every token when cache_row >= 0 (a slot buffer's fixed
//   current-token slot, where the row is not the position the rotation uses); without a v_cache
//   (the retrieval head keeps keys only) V is neither read nor written.
// HF itself rounds cos/sin and each product to bf16 (it runs the rotation in the model dtype);
// this kernel keeps them in fp32, so it is slightly more accurate than HF.
// A token's heads are spread over up to ceil(heads * head_dim / 512) blocks, as many as keep about
// 1,024 blocks in flight (a decode step's few tokens get several each, 1,024 tokens and more one);
// each block computes the token's cos/sin once into shared memory.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct RopeKvAppendParams {
  std::uint16_t* qkv = nullptr;             // bf16 [tokens, row_stride]: q at column 0, k at
                                            // q_heads*head_dim, v at (q_heads+kv_heads)*head_dim
  std::uint16_t* k_cache = nullptr;         // bf16 [max_requests][kv_heads][max_context][head_dim]
  std::uint16_t* v_cache = nullptr;         // same layout, or nullptr: no V
  const float* inv_freq = nullptr;          // fp32 [head_dim / 2]
  const std::int32_t* positions = nullptr;  // [tokens], 0 .. max_context - 1
  const std::int32_t* slots = nullptr;      // [tokens], 0 .. max_requests - 1
  std::int64_t tokens = 0;
  std::int64_t row_stride = 0;  // elements, >= (q_heads + 2 * kv_heads) * head_dim ((q + kv) without V)
  std::int64_t q_heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;               // even, <= 512
  std::int64_t cache_request_stride = 0;   // elements between slots (kv_heads * max_context * head_dim)
  std::int64_t cache_head_stride = 0;      // elements between heads (max_context * head_dim)
  float attention_factor = 1.0f;
  std::int32_t cache_row = -1;  // >= 0: the cache row every token writes (else its position)
};

// Heads in a QKV row: q and k, and v with a V cache (the row's columns are this times head_dim).
inline std::int64_t qkv_row_heads(const RopeKvAppendParams& p) { return p.q_heads + p.kv_heads + (p.v_cache != nullptr ? p.kv_heads : 0); }

// Throws std::invalid_argument naming what is wrong (also for small_gemm's fused epilogue, which
// takes the same parameters); tokens == 0 is valid and does nothing.
void check_rope_kv_append(const RopeKvAppendParams& p);
void launch_rope_kv_append(const RopeKvAppendParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
