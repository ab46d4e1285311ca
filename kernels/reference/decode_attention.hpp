#pragma once
// CPU reference of kernels/decode_attention: the exact softmax attention of one query token per
// request over keys 0 .. lengths[i] - 1 of its cache row (dense) or over the cache rows listed
// for each (request, KV head) (sparse), naive loops, bf16 inputs widened to float and every sum
// taken in double. Same layout as the kernel (see decode_attention.cuh), with host pointers.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct DecodeAttentionParams {
  const std::uint16_t* q = nullptr;  // bf16 [requests, q_row_stride]
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;  // bf16 [max_requests][kv_heads][max_context][head_dim]
  const std::uint16_t* v_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;    // [requests]
  const std::int32_t* lengths = nullptr;  // [requests], dense only; <= 0 gives a zero output row
  int requests = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;  // any positive value (the kernel supports 32, 64, 128)
  float scale = 0.0f;

  // Sparse mode when indices is set: (request i, KV head g) attends the count(i, g) =
  // index_counts[i * count_request_stride + g * count_head_stride] cache rows
  // indices[i * index_request_stride + g * index_head_stride + j], j < count(i, g), in that order
  // (each in [0, max_context): not checked); a count <= 0 gives zero output heads. lengths unused.
  const std::int32_t* indices = nullptr;
  std::int64_t index_request_stride = 0;
  std::int64_t index_head_stride = 0;
  const std::int32_t* index_counts = nullptr;
  std::int64_t count_request_stride = 0;
  std::int64_t count_head_stride = 0;
};

// fp32 [requests, q_heads * head_dim]: out[i, h, :] = sum_j softmax_j(scale * q_i,h . k_j) v_j,
// with k, v of KV head h / (q_heads / kv_heads) of cache row slots[i]: rows j < lengths[i]
// (dense), or the listed rows (sparse; gathered into a contiguous copy, then attend_one).
std::vector<float> decode_attention(const DecodeAttentionParams& p);

// One (query, key range) of the above: softmax(scale * q . k_j) v_j over keys 0 .. length - 1
// of head_dim-element rows k, v (row j at k + j * head_dim); writes head_dim floats to out.
void attend_one(const std::uint16_t* q, const std::uint16_t* k, const std::uint16_t* v, int length, int head_dim,
                float scale, float* out);

}  // namespace specontext::ref
