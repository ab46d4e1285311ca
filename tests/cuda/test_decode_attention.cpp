// kernels/decode_attention against its CPU reference (normalised MSE on the bf16 output), over
// GQA/MQA/MHA, every head_dim, lengths that straddle chunk boundaries and one long context; and
// the reference itself against a hand-computed example.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "kernels/decode_attention.cuh"
#include "kernels/random_hash.hpp"
#include "kernels/reference/decode_attention.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

constexpr std::uint16_t kBf16NaN = 0x7fc0;

struct DecodeCase {
  int q_heads, kv_heads, head_dim;
  std::vector<int> lengths;  // one request each
  int max_context;
  int max_length = 0;  // the launch's hint (0: none)
  float q_std = 1.5f;  // larger q, peakier softmax
};

// Runs the kernel and the reference on one case. The query rows sit in a fused QKV buffer, the
// output rows are wider than the heads (the pad must stay untouched), requests use permuted
// cache rows, and every cache element a request must not read is NaN, so reading past a length
// poisons the output.
void check_decode(const DecodeCase& c, std::uint64_t seed) {
  const int requests = static_cast<int>(c.lengths.size());
  const int max_requests = requests + 2;
  const std::int64_t hd = c.head_dim;
  const std::int64_t head_stride = c.max_context * hd;
  const std::int64_t request_stride = c.kv_heads * head_stride;
  const std::int64_t q_stride = (c.q_heads + 2 * c.kv_heads) * hd;
  const std::int64_t out_stride = c.q_heads * hd + 8;

  std::vector<std::int32_t> slots(requests), lengths(c.lengths.begin(), c.lengths.end());
  for (int i = 0; i < requests; ++i) slots[i] = (i * 5 + 1) % max_requests;
  if (std::gcd(5, max_requests) != 1) std::iota(slots.begin(), slots.end(), 1);

  std::vector<std::uint16_t> q(static_cast<std::size_t>(requests * q_stride));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = ref::float_to_bf16(c.q_std * rng::normal(seed, static_cast<std::int64_t>(i)));
  std::vector<std::uint16_t> k(static_cast<std::size_t>(max_requests * request_stride), kBf16NaN), v(k.size(), kBf16NaN);
  for (int i = 0; i < requests; ++i)
    for (int kh = 0; kh < c.kv_heads; ++kh)
      for (std::int64_t e = 0; e < std::max(0, lengths[i]) * hd; ++e) {
        const std::int64_t at = slots[i] * request_stride + kh * head_stride + e;
        k[at] = ref::float_to_bf16(rng::normal(seed + 1, at));
        v[at] = ref::float_to_bf16(rng::normal(seed + 2, at));
      }

  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ref::DecodeAttentionParams rp;
  rp.q = q.data();
  rp.q_row_stride = q_stride;
  rp.k_cache = k.data();
  rp.v_cache = v.data();
  rp.kv_request_stride = request_stride;
  rp.kv_head_stride = head_stride;
  rp.slots = slots.data();
  rp.lengths = lengths.data();
  rp.requests = requests;
  rp.q_heads = c.q_heads;
  rp.kv_heads = c.kv_heads;
  rp.head_dim = c.head_dim;
  rp.scale = scale;
  const auto want = ref::decode_attention(rp);

  DeviceBuffer<std::uint16_t> dq(q), dk(k), dv(v);
  DeviceBuffer<std::int32_t> dslots(slots), dlengths(lengths);
  const std::uint16_t kPad = 0x1234;
  DeviceBuffer<std::uint16_t> dout(std::vector<std::uint16_t>(static_cast<std::size_t>(requests * out_stride), kPad));
  const std::size_t ws_bytes = kernels::decode_attention_workspace_bytes(requests, c.q_heads, c.head_dim, c.max_context);
  DeviceBuffer<float> ws(std::max<std::size_t>(1, ws_bytes / sizeof(float)));

  kernels::DecodeAttentionParams p;
  p.q = dq.get();
  p.q_row_stride = q_stride;
  p.k_cache = dk.get();
  p.v_cache = dv.get();
  p.kv_request_stride = request_stride;
  p.kv_head_stride = head_stride;
  p.slots = dslots.get();
  p.lengths = dlengths.get();
  p.out = dout.get();
  p.out_row_stride = out_stride;
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  p.requests = requests;
  p.q_heads = c.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.max_context = c.max_context;
  p.max_length = c.max_length;
  p.scale = scale;
  kernels::launch_decode_attention(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto out = dout.download();

  const std::int64_t width = c.q_heads * hd;
  for (int i = 0; i < requests; ++i) {
    std::vector<float> got_row(static_cast<std::size_t>(width)), want_row(want.begin() + i * width, want.begin() + (i + 1) * width);
    for (std::int64_t e = 0; e < width; ++e) got_row[e] = ref::bf16_to_float(out[i * out_stride + e]);
    for (std::int64_t e = width; e < out_stride; ++e) ASSERT_EQ(out[i * out_stride + e], kPad) << "pad of row " << i << " overwritten";
    const double nmse = testing::normalised_mse(got_row, want_row);
    EXPECT_LE(nmse, 1e-4) << "request " << i << " (length " << lengths[i] << ")";
    EXPECT_TRUE(std::isfinite(nmse)) << "request " << i;
  }
}

TEST(DecodeAttention, Gqa32x8HeadDim128LongAndShortContexts) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {1, 2, 255, 256, 257, 5000, 40000}, 40960}, 1);
}

TEST(DecodeAttention, Gqa32x8HeadDim128WithTightMaxLength) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {1, 2, 255, 256, 257, 5000, 40000}, 40960, 40000}, 2);
}

TEST(DecodeAttention, Mqa8x1HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({8, 1, 64, {1, 2, 255, 256, 257, 5000}, 8192}, 3);
}

TEST(DecodeAttention, Mha4x4HeadDim32) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({4, 4, 32, {1, 2, 255, 256, 257, 5000}, 8192}, 4);
}

// Group of 3 (SmolLM2-135M: 9 query / 3 KV heads) and a single request spread over many chunks.
TEST(DecodeAttention, Gqa9x3HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({9, 3, 64, {2048}, 2048}, 5);
  check_decode({9, 3, 64, {1, 1000, 2047}, 2048}, 6);
}

// Groups wider than one block's register budget (16 query heads on one KV head: two head batches).
TEST(DecodeAttention, Mqa16x1HeadDim128And32) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({16, 1, 128, {3, 700, 3000}, 4096}, 7);
  check_decode({16, 1, 32, {3, 700, 3000}, 4096}, 8);
}

TEST(DecodeAttention, GroupOf8HeadDim64And128) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({64, 8, 128, {129, 4097}, 8192}, 9);
  check_decode({16, 2, 64, {129, 4097}, 8192}, 10);
}

// So many requests that every request is one chunk: the split kernel writes the output itself.
TEST(DecodeAttention, ManyRequestsSingleChunk) {
  SPECONTEXT_REQUIRE_GPU();
  std::vector<int> lengths(1100);
  for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = 1 + static_cast<int>(rng::splitmix64(i) % 300);
  check_decode({4, 2, 32, lengths, 300}, 11);
}

// One request: a short context (few chunks; one of them partly filled) and a long one cut into
// hundreds of chunks, so the merge combines many partial results.
TEST(DecodeAttention, SingleRequestShortAndLongContexts) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {2048}, 2048}, 13);
  check_decode({32, 8, 128, {1500}, 2048, 1500}, 14);
  check_decode({8, 2, 128, {32768}, 32768}, 15);
  check_decode({8, 2, 32, {30001}, 32768}, 16);
}

// A request with no valid keys gets zeros, next to normal ones.
TEST(DecodeAttention, ZeroLengthGivesZeros) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({8, 2, 64, {0, 300, 0}, 1024}, 12);
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(DecodeAttention, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  static std::int32_t ints[4];
  kernels::DecodeAttentionParams p;
  p.q = p.k_cache = p.v_cache = fake;
  p.out = fake;
  p.slots = p.lengths = ints;
  p.requests = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 96;
  p.max_context = 1024;
  p.q_row_stride = p.out_row_stride = 12 * 96;
  p.kv_head_stride = 1024 * 96;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.scale = 0.1f;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "head_dim 96 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim 96"), std::string::npos) << e.what();
  }
  p.head_dim = 128;
  p.q_row_stride = p.out_row_stride = 12 * 128;
  p.kv_head_stride = 1024 * 128;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.kv_heads = 3;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);  // 8 % 3 != 0
  p.kv_heads = 2;
  p.workspace = nullptr;
  p.workspace_bytes = 0;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);  // needs a workspace
  p.workspace = reinterpret_cast<float*>(fake);
  p.workspace_bytes = 16;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "tiny workspace accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
  }
  p.workspace_bytes = kernels::decode_attention_workspace_bytes(2, 8, 128, 1024);
  p.kv_head_stride = 1000 * 128;  // shorter than max_context rows
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
}

TEST(DecodeAttention, WorkspaceIsBounded) {
  // At most ~1024 + requests chunk rows per query head, whatever the context.
  const std::size_t row = 32 * (128 + 2) * sizeof(float);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(1, 32, 128, 1 << 20), 1024 * row);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(32, 32, 128, 1 << 20), (1024 + 32) * row);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(5000, 32, 128, 1 << 20), 5000 * row);
  EXPECT_EQ(kernels::decode_attention_workspace_bytes(0, 32, 128, 1024), 0u);
}

}  // namespace

// Two keys, worked by hand: q = (1, 0), k0 = (1, 0), k1 = (0, 1), scale 1: scores 1 and 0,
// weights e / (e + 1) and 1 / (e + 1); v0 = (2, 0), v1 = (0, 4). Both query heads share the one
// KV head; the second request (length 1, another slot) sees only its own first key.
TEST(DecodeAttentionReference, TwoKeysByHand) {
  using ref::float_to_bf16;
  const int hd = 2, max_context = 4;
  // Cache: 2 slots x 1 KV head x 4 keys x 2 dims; slot 1 is request 0's, slot 0 request 1's.
  std::vector<std::uint16_t> k(2 * max_context * hd, float_to_bf16(std::numeric_limits<float>::quiet_NaN()));
  std::vector<std::uint16_t> v = k;
  auto put = [&](std::vector<std::uint16_t>& t, int slot, int key, float a, float b) {
    t[(slot * max_context + key) * hd] = float_to_bf16(a);
    t[(slot * max_context + key) * hd + 1] = float_to_bf16(b);
  };
  put(k, 1, 0, 1, 0), put(k, 1, 1, 0, 1), put(v, 1, 0, 2, 0), put(v, 1, 1, 0, 4);
  put(k, 0, 0, 3, 3), put(v, 0, 0, -1.5f, 0.25f);
  // Query rows: 2 heads x 2 dims; head 1 of request 0 is (0, 2): scores 0 and 2.
  std::vector<std::uint16_t> q = {float_to_bf16(1), 0, 0, float_to_bf16(2), float_to_bf16(5), 0, 0, float_to_bf16(-7)};
  std::vector<std::int32_t> slots = {1, 0}, lengths = {2, 1};
  ref::DecodeAttentionParams p;
  p.q = q.data();
  p.q_row_stride = 4;
  p.k_cache = k.data();
  p.v_cache = v.data();
  p.kv_request_stride = max_context * hd;
  p.kv_head_stride = max_context * hd;
  p.slots = slots.data();
  p.lengths = lengths.data();
  p.requests = 2;
  p.q_heads = 2;
  p.kv_heads = 1;
  p.head_dim = hd;
  p.scale = 1.0f;
  const auto out = ref::decode_attention(p);
  ASSERT_EQ(out.size(), 8u);
  const double e = std::exp(1.0), e2 = std::exp(2.0);
  EXPECT_NEAR(out[0], 2 * e / (e + 1), 1e-6);
  EXPECT_NEAR(out[1], 4 / (e + 1), 1e-6);
  EXPECT_NEAR(out[2], 2 * 1 / (1 + e2), 1e-6);
  EXPECT_NEAR(out[3], 4 * e2 / (1 + e2), 1e-6);
  EXPECT_FLOAT_EQ(out[4], -1.5f);  // one key: its value, whatever the score
  EXPECT_FLOAT_EQ(out[5], 0.25f);
  EXPECT_FLOAT_EQ(out[6], -1.5f);
  EXPECT_FLOAT_EQ(out[7], 0.25f);

  // Scaling changes the weights as scale * score: scale 0 would be uniform; scale 2 doubles.
  p.scale = 2.0f;
  const auto out2 = ref::decode_attention(p);
  EXPECT_NEAR(out2[0], 2 * e2 / (e2 + 1), 1e-6);
  EXPECT_NEAR(out2[1], 4 / (e2 + 1), 1e-6);
}

// A zero query weighs every key equally: the output is the mean of the values, whatever the keys.
TEST(DecodeAttentionReference, ZeroQueryAveragesValues) {
  const int hd = 32, len = 257;
  std::vector<std::uint16_t> q(hd, 0), k(len * hd), v(len * hd);
  for (int i = 0; i < len * hd; ++i) {
    k[i] = ref::float_to_bf16(rng::normal(3, i));
    v[i] = ref::float_to_bf16(rng::normal(4, i));
  }
  std::vector<float> out(hd);
  ref::attend_one(q.data(), k.data(), v.data(), len, hd, 0.125f, out.data());
  for (int d = 0; d < hd; ++d) {
    double mean = 0;
    for (int j = 0; j < len; ++j) mean += ref::bf16_to_float(v[j * hd + d]);
    EXPECT_NEAR(out[d], mean / len, 1e-6) << "dim " << d;
  }
}

// Large scores must not overflow: the reference subtracts the max before exponentiating.
TEST(DecodeAttentionReference, HugeScoresStayFinite) {
  const int hd = 2;
  std::vector<std::uint16_t> q = {ref::float_to_bf16(1000), 0};
  std::vector<std::uint16_t> k = {ref::float_to_bf16(1000), 0, ref::float_to_bf16(992), 0};
  std::vector<std::uint16_t> v = {ref::float_to_bf16(1), 0, 0, ref::float_to_bf16(1)};
  std::vector<float> out(hd);
  ref::attend_one(q.data(), k.data(), v.data(), 2, hd, 1.0f, out.data());
  // Scores 1e6 and 992000 (999 is not a bf16): the second weight is e^-8000, i.e. 0.
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 0.0f);
}

}  // namespace specontext
