// kernels/prefill_attention against its CPU reference (normalised MSE on the bf16 output): new
// tokens appended after an existing context, several requests in one call with tiles that span
// request boundaries, GQA/MQA/MHA and every head_dim; and the prefill reference against the
// decode reference, query by query.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/prefill_attention.cuh"
#include "kernels/random_hash.hpp"
#include "kernels/reference/decode_attention.hpp"
#include "kernels/reference/prefill_attention.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

constexpr std::uint16_t kBf16NaN = 0x7fc0;

struct PrefillRequest {
  int slot;
  int context;  // keys already in the cache before this call
  int fresh;    // new tokens in this call, at positions context .. context + fresh - 1
};

struct PrefillCase {
  int q_heads, kv_heads, head_dim;
  std::vector<PrefillRequest> requests;  // their tokens are consecutive rows, in this order
  int max_requests, max_context;
};

// Host-side problem: random q (fused QKV rows), a cache whose keys beyond each request's last
// position are NaN (a causal leak or an over-read poisons the output), slots and positions.
struct PrefillProblem {
  std::int64_t q_stride = 0, head_stride = 0, request_stride = 0;
  std::vector<std::uint16_t> q, k, v;
  std::vector<std::int32_t> slots, positions;
  float scale = 0;

  PrefillProblem(const PrefillCase& c, std::uint64_t seed) {
    const std::int64_t hd = c.head_dim;
    q_stride = (c.q_heads + 2 * c.kv_heads) * hd;
    head_stride = c.max_context * hd;
    request_stride = c.kv_heads * head_stride;
    scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    k.assign(static_cast<std::size_t>(c.max_requests * request_stride), kBf16NaN);
    v = k;
    for (const auto& r : c.requests) {
      for (int t = 0; t < r.fresh; ++t) {
        slots.push_back(r.slot);
        positions.push_back(r.context + t);
      }
      for (int kh = 0; kh < c.kv_heads; ++kh)
        for (std::int64_t e = 0; e < (r.context + r.fresh) * hd; ++e) {
          const std::int64_t at = r.slot * request_stride + kh * head_stride + e;
          k[at] = ref::float_to_bf16(rng::normal(seed + 1, at));
          v[at] = ref::float_to_bf16(rng::normal(seed + 2, at));
        }
    }
    q.resize(slots.size() * q_stride);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = ref::float_to_bf16(1.5f * rng::normal(seed, static_cast<std::int64_t>(i)));
  }

  int tokens() const { return static_cast<int>(slots.size()); }

  ref::PrefillAttentionParams reference_params(const PrefillCase& c) const {
    ref::PrefillAttentionParams p;
    p.q = q.data();
    p.q_row_stride = q_stride;
    p.k_cache = k.data();
    p.v_cache = v.data();
    p.kv_request_stride = request_stride;
    p.kv_head_stride = head_stride;
    p.slots = slots.data();
    p.positions = positions.data();
    p.tokens = tokens();
    p.q_heads = c.q_heads;
    p.kv_heads = c.kv_heads;
    p.head_dim = c.head_dim;
    p.scale = scale;
    return p;
  }
};

void check_prefill(const PrefillCase& c, std::uint64_t seed) {
  const PrefillProblem pb(c, seed);
  const auto want = ref::prefill_attention(pb.reference_params(c));
  const int tokens = pb.tokens();
  const std::int64_t width = static_cast<std::int64_t>(c.q_heads) * c.head_dim;
  const std::int64_t out_stride = width + 8;

  DeviceBuffer<std::uint16_t> dq(pb.q), dk(pb.k), dv(pb.v);
  DeviceBuffer<std::int32_t> dslots(pb.slots), dpos(pb.positions);
  const std::uint16_t kPad = 0x1234;
  DeviceBuffer<std::uint16_t> dout(std::vector<std::uint16_t>(static_cast<std::size_t>(tokens * out_stride), kPad));
  kernels::PrefillAttentionParams p;
  p.q = dq.get();
  p.q_row_stride = pb.q_stride;
  p.k_cache = dk.get();
  p.v_cache = dv.get();
  p.kv_request_stride = pb.request_stride;
  p.kv_head_stride = pb.head_stride;
  p.slots = dslots.get();
  p.positions = dpos.get();
  p.out = dout.get();
  p.out_row_stride = out_stride;
  p.tokens = tokens;
  p.q_heads = c.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.max_context = c.max_context;
  p.scale = pb.scale;
  kernels::launch_prefill_attention(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto out = dout.download();

  std::vector<float> got(static_cast<std::size_t>(tokens * width));
  for (int t = 0; t < tokens; ++t) {
    for (std::int64_t e = 0; e < width; ++e) got[t * width + e] = ref::bf16_to_float(out[t * out_stride + e]);
    for (std::int64_t e = width; e < out_stride; ++e) ASSERT_EQ(out[t * out_stride + e], kPad) << "pad of token " << t << " overwritten";
  }
  EXPECT_LE(testing::normalised_mse(got, want), 1e-4);
  // Per token too: one wrong row is invisible in the overall mean.
  int bad = 0;
  for (int t = 0; t < tokens && bad < 5; ++t) {
    const std::vector<float> g(got.begin() + t * width, got.begin() + (t + 1) * width);
    const std::vector<float> w(want.begin() + t * width, want.begin() + (t + 1) * width);
    const double nmse = testing::normalised_mse(g, w);
    if (!(nmse <= 1e-4)) {
      ++bad;
      ADD_FAILURE() << "token " << t << " (slot " << pb.slots[t] << ", position " << pb.positions[t] << "): nmse " << nmse;
    }
  }
}

// Two requests in one call; the first continues a 300-token context, the tile of rows 192..255
// holds both requests.
TEST(PrefillAttention, Gqa32x8HeadDim128TwoRequestsAfterContext) {
  SPECONTEXT_REQUIRE_GPU();
  check_prefill({32, 8, 128, {{2, 300, 200}, {0, 0, 130}}, 3, 1024}, 1);
}

TEST(PrefillAttention, Mqa8x1HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_prefill({8, 1, 64, {{1, 24, 1000}, {3, 5, 77}}, 4, 2048}, 2);
}

// Request sizes around the 64-row tile (1, 63, 65 tokens): several boundaries inside tiles.
TEST(PrefillAttention, Mha4x4HeadDim32) {
  SPECONTEXT_REQUIRE_GPU();
  check_prefill({4, 4, 32, {{0, 10, 1}, {4, 0, 63}, {2, 100, 65}, {3, 63, 129}}, 5, 512}, 3);
}

// A whole prompt from position 0 (the common case) over many key tiles.
TEST(PrefillAttention, WholePromptGqa) {
  SPECONTEXT_REQUIRE_GPU();
  check_prefill({4, 1, 64, {{0, 0, 2000}}, 1, 2048}, 4);
  check_prefill({6, 2, 128, {{1, 0, 777}}, 2, 1024}, 5);
}

TEST(PrefillAttention, Gqa9x3HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_prefill({9, 3, 64, {{1, 40, 150}, {0, 0, 90}}, 2, 256}, 6);
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(PrefillAttention, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  static std::int32_t ints[4];
  kernels::PrefillAttentionParams p;
  p.q = p.k_cache = p.v_cache = fake;
  p.out = fake;
  p.slots = p.positions = ints;
  p.tokens = 3;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 80;
  p.max_context = 1024;
  p.q_row_stride = p.out_row_stride = 12 * 80;
  p.kv_head_stride = 1024 * 80;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.scale = 0.1f;
  try {
    kernels::launch_prefill_attention(p, nullptr);
    FAIL() << "head_dim 80 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim 80"), std::string::npos) << e.what();
  }
  p.head_dim = 64;
  p.q_row_stride = 8 * 64 - 8;  // narrower than the query heads
  p.out_row_stride = 8 * 64;
  p.kv_head_stride = 1024 * 64;
  p.kv_request_stride = 2 * p.kv_head_stride;
  EXPECT_THROW(kernels::launch_prefill_attention(p, nullptr), std::invalid_argument);
  p.q_row_stride = 12 * 64;
  p.scale = 0.0f;
  EXPECT_THROW(kernels::launch_prefill_attention(p, nullptr), std::invalid_argument);
}

}  // namespace

// Each prefill query is a decode query over keys 0 .. its position: the two references agree
// token by token (tokens after a context, two requests, GQA).
TEST(PrefillAttentionReference, EqualsDecodeReferenceRowByRow) {
  const PrefillCase c{8, 2, 32, {{1, 37, 50}, {0, 0, 20}}, 2, 128};
  const PrefillProblem pb(c, 9);
  const auto prefill = ref::prefill_attention(pb.reference_params(c));
  const int width = c.q_heads * c.head_dim;
  ASSERT_EQ(prefill.size(), static_cast<std::size_t>(pb.tokens() * width));
  for (int t = 0; t < pb.tokens(); ++t) {
    const std::int32_t length = pb.positions[t] + 1;
    ref::DecodeAttentionParams d;
    d.q = pb.q.data() + t * pb.q_stride;
    d.q_row_stride = pb.q_stride;
    d.k_cache = pb.k.data();
    d.v_cache = pb.v.data();
    d.kv_request_stride = pb.request_stride;
    d.kv_head_stride = pb.head_stride;
    d.slots = &pb.slots[t];
    d.lengths = &length;
    d.requests = 1;
    d.q_heads = c.q_heads;
    d.kv_heads = c.kv_heads;
    d.head_dim = c.head_dim;
    d.scale = pb.scale;
    const auto decode = ref::decode_attention(d);
    for (int e = 0; e < width; ++e) {
      ASSERT_TRUE(std::isfinite(prefill[t * width + e])) << "token " << t << " element " << e;
      ASSERT_NEAR(prefill[t * width + e], decode[e], 1e-6) << "token " << t << " element " << e;
    }
  }
}

// The causal mask: changing keys after a token's position never changes its output, and the
// first token of a prompt (position 0) returns its own value row.
TEST(PrefillAttentionReference, IsCausal) {
  const PrefillCase c{4, 2, 32, {{0, 0, 40}}, 1, 64};
  PrefillProblem pb(c, 11);
  const auto before = ref::prefill_attention(pb.reference_params(c));
  // Overwrite key/value 30.. of every KV head; tokens 0..29 must not change.
  for (int kh = 0; kh < c.kv_heads; ++kh)
    for (int e = 30 * c.head_dim; e < 40 * c.head_dim; ++e) {
      pb.k[kh * pb.head_stride + e] = ref::float_to_bf16(9.0f);
      pb.v[kh * pb.head_stride + e] = ref::float_to_bf16(-9.0f);
    }
  const auto after = ref::prefill_attention(pb.reference_params(c));
  const int width = c.q_heads * c.head_dim;
  for (int e = 0; e < 30 * width; ++e) ASSERT_EQ(before[e], after[e]) << "element " << e;
  bool changed = false;
  for (int e = 30 * width; e < 40 * width; ++e) changed |= before[e] != after[e];
  EXPECT_TRUE(changed);
  for (int h = 0; h < c.q_heads; ++h)
    for (int d = 0; d < c.head_dim; ++d)
      EXPECT_FLOAT_EQ(before[h * c.head_dim + d], ref::bf16_to_float(pb.v[(h / 2) * pb.head_stride + d]));
}

}  // namespace specontext
