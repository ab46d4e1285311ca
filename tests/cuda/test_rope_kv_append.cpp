// kernels/rope_kv_append against its CPU reference (GQA shapes, positions up to 200000, a YaRN
// attention factor), and the reference against rotations computed by hand.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/reference/rope_kv_append.hpp"
#include "kernels/rope_kv_append.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

// HF's default inverse frequencies: theta^(-2i / head_dim), computed in fp32 as torch does.
std::vector<float> inv_freq(std::int64_t head_dim, double theta) {
  std::vector<float> f(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < f.size(); ++i)
    f[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  return f;
}

struct RopeCase {
  std::int64_t q_heads, kv_heads, head_dim, tokens, max_requests, max_context;
  double theta;
  float attention_factor;
  bool with_v = true;       // false: the retrieval head's keys-only cache
  std::int32_t cache_row = -1;  // >= 0: a fixed row (slots are then distinct, one token per slot)
};

void run_case(const RopeCase& c) {
  ref::RopeKvShape s;
  s.tokens = c.tokens;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.row_stride = (c.q_heads + (c.with_v ? 2 : 1) * c.kv_heads) * c.head_dim + 8;
  s.cache_row = c.cache_row;
  s.cache_head_stride = c.max_context * c.head_dim;
  s.cache_request_stride = c.kv_heads * s.cache_head_stride;
  s.attention_factor = c.attention_factor;
  const std::size_t cache_n = static_cast<std::size_t>(c.max_requests * s.cache_request_stride);

  auto qkv = random_bf16(static_cast<std::size_t>(c.tokens * s.row_stride), 21);
  const auto freq = inv_freq(c.head_dim, c.theta);
  // Distinct positions (spread up to max_context - 1, the last one included), random slots.
  std::mt19937 gen(22);
  std::vector<std::int32_t> positions(static_cast<std::size_t>(c.tokens)), slots(positions.size());
  std::uniform_int_distribution<std::int32_t> pos_d(0, static_cast<std::int32_t>(c.max_context - 1));
  std::uniform_int_distribution<std::int32_t> slot_d(0, static_cast<std::int32_t>(c.max_requests - 1));
  for (std::size_t t = 0; t < positions.size(); ++t) {
    positions[t] = t == 0 ? static_cast<std::int32_t>(c.max_context - 1) : pos_d(gen);
    for (std::size_t u = 0; u < t; ++u)
      if (positions[u] == positions[t]) positions[t] = (positions[t] + 1) % static_cast<std::int32_t>(c.max_context), u = static_cast<std::size_t>(-1);
    slots[t] = c.cache_row >= 0 ? static_cast<std::int32_t>(t) : slot_d(gen);
  }

  std::vector<std::uint16_t> k_cache(cache_n, 0), v_cache(c.with_v ? cache_n : 0, 0);
  DeviceBuffer<std::uint16_t> d_qkv(qkv), d_k(k_cache), d_v(std::max<std::size_t>(v_cache.size(), 1));
  if (c.with_v) d_v.upload(v_cache);
  DeviceBuffer<float> d_freq(freq);
  DeviceBuffer<std::int32_t> d_pos(positions), d_slot(slots);
  kernels::RopeKvAppendParams p;
  p.qkv = d_qkv.get();
  p.k_cache = d_k.get();
  p.v_cache = c.with_v ? d_v.get() : nullptr;
  p.cache_row = c.cache_row;
  p.inv_freq = d_freq.get();
  p.positions = d_pos.get();
  p.slots = d_slot.get();
  p.tokens = c.tokens;
  p.row_stride = s.row_stride;
  p.q_heads = c.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.cache_request_stride = s.cache_request_stride;
  p.cache_head_stride = s.cache_head_stride;
  p.attention_factor = c.attention_factor;
  kernels::launch_rope_kv_append(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  ref::rope_kv_append(qkv, k_cache, v_cache, freq, positions, slots, s);

  const std::string what = "heads " + std::to_string(c.q_heads) + "/" + std::to_string(c.kv_heads) + " head_dim " + std::to_string(c.head_dim) +
                           " tokens " + std::to_string(c.tokens) + " max_context " + std::to_string(c.max_context);
  EXPECT_LT(testing::normalised_mse(testing::to_float(d_qkv.download()), testing::to_float(qkv)), 1e-5) << what;
  EXPECT_LT(testing::normalised_mse(testing::to_float(d_k.download()), testing::to_float(k_cache)), 1e-5) << what;
  if (c.with_v) {
    EXPECT_EQ(d_v.download(), v_cache) << what;
  }
}

TEST(RopeKvAppend, MatchesTheReferenceGqa32x8) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t head_dim : {128, 64})
    for (std::int64_t tokens : {1, 37}) run_case({32, 8, head_dim, tokens, 3, 2048, 500000.0, 1.0f});
  // A prefill's token count: one block per token, each walking all of its heads (the stripe loop).
  run_case({32, 8, 128, 1500, 1, 2048, 500000.0, 1.0f});
  // Between the two: 6 stripes a token, each taking two items a thread (the loop's stride).
  run_case({32, 8, 128, 200, 2, 2048, 500000.0, 1.0f});
  RopeCase keys_only{32, 8, 128, 300, 2, 2048, 500000.0, 1.0f};
  keys_only.with_v = false;
  run_case(keys_only);
}

TEST(RopeKvAppend, MatchesTheReferenceAtLongPositions) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t head_dim : {128, 64}) {
    run_case({4, 2, head_dim, 37, 2, 200001, 1000000.0, 1.0f});
    run_case({4, 2, head_dim, 1, 2, 200001, 10000.0, 1.2079f});  // YaRN factor 8: 0.1 ln 8 + 1
  }
}

// The retrieval head's keys-only cache (no V columns in the row, none written) and a slot
// buffer's fixed current-token row, rotated at the token's own position.
TEST(RopeKvAppend, KeysOnlyAndFixedCacheRow) {
  SPECONTEXT_REQUIRE_GPU();
  RopeCase keys_only{32, 8, 128, 5, 6, 4096, 500000.0, 1.0f};
  keys_only.with_v = false;
  run_case(keys_only);
  RopeCase fixed_row{9, 3, 64, 4, 4, 300, 10000.0, 1.0f};
  fixed_row.cache_row = 257;
  run_case(fixed_row);
  fixed_row.with_v = false;
  run_case(fixed_row);
}

}  // namespace

TEST(RopeKvAppendReference, RotatesByHandAtAKnownPosition) {
  // head_dim 4: pairs (x0, x2) and (x1, x3), inv_freq (1, 1/2), position 3: angles 3 and 1.5.
  const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  const float f[2] = {1.0f, 0.5f};
  std::uint16_t out[4];
  ref::rope_vector(x, 4, f, 3, 1.0f, out);
  const double want[4] = {1 * std::cos(3.0) - 3 * std::sin(3.0), 2 * std::cos(1.5) - 4 * std::sin(1.5), 3 * std::cos(3.0) + 1 * std::sin(3.0),
                          4 * std::cos(1.5) + 2 * std::sin(1.5)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(ref::bf16_to_float(out[i]), want[i], std::abs(want[i]) * 4e-3 + 1e-6) << i;

  // The attention factor scales cos and sin alike; position 0 is the identity times the factor.
  ref::rope_vector(x, 4, f, 0, 2.0f, out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ref::bf16_to_float(out[i]), 2 * x[i]);
}

TEST(RopeKvAppendReference, LongPositionsUseTheFp32Angle) {
  // At position 200000 the angle is float(200000) * inv_freq rounded once in fp32, as HF; a
  // double angle would differ by up to ~0.008 rad for inv_freq near 1.
  const float f[1] = {0.7f};
  const float x[2] = {1.0f, 0.0f};
  std::uint16_t out[2];
  ref::rope_vector(x, 2, f, 200000, 1.0f, out);
  const float angle = 200000.0f * 0.7f;
  EXPECT_NEAR(ref::bf16_to_float(out[0]), std::cos(angle), 4e-3);
  EXPECT_NEAR(ref::bf16_to_float(out[1]), std::sin(angle), 4e-3);
}

TEST(RopeKvAppendReference, WritesTheCacheAtSlotHeadPosition) {
  // 1 q head, 1 kv head, head_dim 2; cache [2 requests][1 head][3 positions][2].
  auto b = [](float v) { return ref::float_to_bf16(v); };
  std::vector<std::uint16_t> qkv = {b(1), b(0), b(0), b(1), b(5), b(6)};  // q (1,0), k (0,1), v (5,6)
  std::vector<std::uint16_t> k(12, 0), v(12, 0);
  ref::RopeKvShape s;
  s.tokens = 1;
  s.row_stride = 6;
  s.q_heads = 1;
  s.kv_heads = 1;
  s.head_dim = 2;
  s.cache_head_stride = 6;
  s.cache_request_stride = 6;
  const float pi_2 = 1.57079632679f;
  ref::rope_kv_append(qkv, k, v, {pi_2}, {1}, {1}, s);  // a quarter turn
  // q (1, 0) -> (cos, sin) = (0, 1); k (0, 1) -> (-1, 0).
  EXPECT_NEAR(ref::bf16_to_float(qkv[0]), 0.0f, 1e-6);
  EXPECT_EQ(ref::bf16_to_float(qkv[1]), 1.0f);
  EXPECT_EQ(ref::bf16_to_float(qkv[2]), -1.0f);
  EXPECT_NEAR(ref::bf16_to_float(qkv[3]), 0.0f, 1e-6);
  const std::size_t at = 1 * 6 + 1 * 2;  // slot 1, position 1
  EXPECT_EQ(k[at], qkv[2]);
  EXPECT_EQ(k[at + 1], qkv[3]);
  EXPECT_EQ(v[at], b(5));
  EXPECT_EQ(v[at + 1], b(6));
}

}  // namespace specontext
