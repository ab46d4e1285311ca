// kernels/attention_scores against its CPU reference: every written score within a relative
// tolerance of the exact probability, the top-32 ranking of every row the same up to near-ties,
// and every column the kernel must not write still holding its sentinel; over GQA/MQA/MHA, every
// head_dim, both reductions, one row per KV head or one over all heads, the retrieval head's
// column layout (position 0 pinned, keys shifted by one, the newest key left out), zero-key
// requests and many requests. Also the reference itself against hand-computed examples.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kernels/attention_scores.cuh"
#include "kernels/random_hash.hpp"
#include "kernels/reference/attention_scores.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using KReduce = kernels::AttentionScoresParams::Reduce;
using RReduce = ref::AttentionScoresParams::Reduce;

constexpr std::uint16_t kBf16NaN = 0x7fc0;
constexpr float kSentinel = -1234.5f;  // pre-filled into the output: unwritten columns keep it
// A written score may differ from the exact probability by this much (fp32 logits, lse and expf
// give errors around 1e-6 relative; the absolute term only covers subnormal probabilities).
constexpr double kAbsTol = 1e-8;
constexpr double kRelTol = 1e-3;
constexpr int kTopK = 32;

struct ScoresCase {
  int q_heads, kv_heads, head_dim;
  std::vector<int> lengths;  // one request each
  int max_context;
  int max_length = 0;  // the launch's hint (0: none)
  int length_offset = 0;
  int column_offset = 0;
  bool pin_last = false;
  bool all_heads = false;
  bool mean = false;
  float q_std = 1.5f;  // larger q, peakier softmax
};

std::string describe(const ScoresCase& c) {
  std::ostringstream s;
  s << c.q_heads << "x" << c.kv_heads << " hd" << c.head_dim << " max_context " << c.max_context << " max_length "
    << c.max_length << " length_offset " << c.length_offset << " column_offset " << c.column_offset
    << (c.pin_last ? " pin_last" : "") << (c.all_heads ? " all_heads" : "") << (c.mean ? " mean" : " max");
  return s.str();
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The reference's top-k among the finite (scored, unpinned) columns is the kernel's, except that
// columns whose exact scores lie within the tolerance of the k-th one may trade places.
void check_ranking(const float* got, const float* want, std::int64_t columns, const std::string& where) {
  std::vector<std::int64_t> cols;
  for (std::int64_t j = 0; j < columns; ++j)
    if (std::isfinite(want[j])) cols.push_back(j);
  if (cols.size() <= static_cast<std::size_t>(kTopK)) return;  // everything is selected
  auto top = [&](const float* v) {
    std::vector<std::int64_t> idx = cols;
    std::partial_sort(idx.begin(), idx.begin() + kTopK, idx.end(),
                      [&](std::int64_t a, std::int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    idx.resize(kTopK);
    return idx;
  };
  const std::vector<std::int64_t> got_top = top(got), want_top = top(want);
  const double kth = want[want_top.back()];
  const double slack = 2 * (kAbsTol + kRelTol * kth);  // both sides of a near-tie may be off
  int misses = 0;
  for (std::int64_t j : got_top)
    if (want[j] < kth - slack) ++misses;  // the kernel chose a clearly lower-ranked column
  for (std::int64_t j : want_top)
    if (want[j] > kth + slack && std::find(got_top.begin(), got_top.end(), j) == got_top.end()) ++misses;  // dropped a clear winner
  EXPECT_EQ(misses, 0) << where << ": top-" << kTopK << " differs beyond near-ties (k-th exact score " << kth << ")";
}

// Runs the kernel and the reference on one case. The query rows sit in a fused QKV buffer,
// requests use permuted cache rows, every cache element a request must not read is NaN (so
// reading past a key count poisons the scores), the workspace starts as NaN (so reading an
// unwritten logit or partial does too), and the output starts as a sentinel.
void check_scores(const ScoresCase& c, std::uint64_t seed) {
  const int requests = static_cast<int>(c.lengths.size());
  const int max_requests = requests + 2;
  const std::int64_t hd = c.head_dim;
  const std::int64_t head_stride = c.max_context * hd;
  const std::int64_t request_stride = c.kv_heads * head_stride;
  const std::int64_t q_stride = (c.q_heads + 2 * c.kv_heads) * hd;
  const std::int64_t out_stride = c.max_context + c.column_offset + 5;  // 5 pad columns never written
  const int out_rows = c.all_heads ? 1 : c.kv_heads;

  std::vector<std::int32_t> slots(requests), lengths(c.lengths.begin(), c.lengths.end());
  for (int i = 0; i < requests; ++i) slots[i] = (i * 5 + 1) % max_requests;
  if (std::gcd(5, max_requests) != 1) std::iota(slots.begin(), slots.end(), 1);

  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ref::AttentionScoresParams rp;
  rp.q_row_stride = q_stride;
  rp.kv_request_stride = request_stride;
  rp.kv_head_stride = head_stride;
  rp.slots = slots.data();
  rp.lengths = lengths.data();
  rp.length_offset = c.length_offset;
  rp.requests = requests;
  rp.q_heads = c.q_heads;
  rp.kv_heads = c.kv_heads;
  rp.head_dim = c.head_dim;
  rp.max_context = c.max_context;
  rp.max_length = c.max_length;
  rp.scale = scale;
  rp.reduce = c.mean ? RReduce::Mean : RReduce::Max;
  rp.all_heads = c.all_heads;
  rp.out_stride = out_stride;
  rp.column_offset = c.column_offset;
  rp.pin_last = c.pin_last;

  std::vector<std::uint16_t> q(static_cast<std::size_t>(requests * q_stride));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = ref::float_to_bf16(c.q_std * rng::normal(seed, static_cast<std::int64_t>(i)));
  std::vector<std::uint16_t> k(static_cast<std::size_t>(max_requests * request_stride), kBf16NaN);
  for (int i = 0; i < requests; ++i) {
    const std::int64_t keys = ref::attention_scores_keys(rp, i);  // only these may be read
    for (int kh = 0; kh < c.kv_heads; ++kh)
      for (std::int64_t e = 0; e < keys * hd; ++e) {
        const std::int64_t at = slots[i] * request_stride + kh * head_stride + e;
        k[at] = ref::float_to_bf16(rng::normal(seed + 1, at));
      }
  }
  rp.q = q.data();
  rp.k_cache = k.data();
  const auto want = ref::attention_scores(rp);

  DeviceBuffer<std::uint16_t> dq(q), dk(k);
  DeviceBuffer<std::int32_t> dslots(slots), dlengths(lengths);
  DeviceBuffer<float> dout(std::vector<float>(want.size(), kSentinel));
  const std::size_t ws_bytes = kernels::attention_scores_workspace_bytes(requests, c.q_heads, c.max_context);
  DeviceBuffer<float> ws(std::vector<float>(ws_bytes / sizeof(float), std::numeric_limits<float>::quiet_NaN()));

  kernels::AttentionScoresParams p;
  p.q = dq.get();
  p.q_row_stride = q_stride;
  p.k_cache = dk.get();
  p.kv_request_stride = request_stride;
  p.kv_head_stride = head_stride;
  p.slots = dslots.get();
  p.lengths = dlengths.get();
  p.length_offset = c.length_offset;
  p.requests = requests;
  p.q_heads = c.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.max_context = c.max_context;
  p.max_length = c.max_length;
  p.scale = scale;
  p.reduce = c.mean ? KReduce::Mean : KReduce::Max;
  p.all_heads = c.all_heads;
  p.out = dout.get();
  p.out_stride = out_stride;
  p.column_offset = c.column_offset;
  p.pin_last = c.pin_last;
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  kernels::launch_attention_scores(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = dout.download();

  const std::string what = describe(c);
  for (int i = 0; i < requests; ++i) {
    for (int row = 0; row < out_rows; ++row) {
      const std::int64_t base = (static_cast<std::int64_t>(i) * out_rows + row) * out_stride;
      const std::string where = what + ", request " + std::to_string(i) + " (length " + std::to_string(lengths[i]) + "), row " +
                                std::to_string(row);
      std::int64_t bad = 0;
      std::string first_bad;
      for (std::int64_t j = 0; j < out_stride; ++j) {
        const float w = want[base + j], g = got[base + j];
        bool ok;
        if (std::isnan(w))
          ok = same_bits(g, kSentinel);  // a column the kernel must leave alone
        else if (std::isinf(w))
          ok = g == w;
        else
          ok = std::isfinite(g) && std::abs(static_cast<double>(g) - w) <= kAbsTol + kRelTol * w;
        if (!ok && bad++ == 0) first_bad = "column " + std::to_string(j) + ": got " + std::to_string(g) + ", want " + std::to_string(w);
      }
      EXPECT_EQ(bad, 0) << where << ": " << bad << " wrong columns, first " << first_bad;
      if (bad == 0) check_ranking(got.data() + base, want.data() + base, out_stride, where);
    }
  }
}

TEST(AttentionScores, Gqa32x8HeadDim128LongAndShortContexts) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {1, 2, 255, 256, 257, 5000, 40000}, .max_context = 40960}, 1);
}

TEST(AttentionScores, Gqa32x8HeadDim128TightMaxLengthAndMean) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {1, 300, 4097, 12000}, .max_context = 12288, .max_length = 12000,
                .mean = true},
               2);
}

TEST(AttentionScores, Mqa8x1HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 8, .kv_heads = 1, .head_dim = 64, .lengths = {1, 2, 255, 256, 257, 5000}, .max_context = 8192}, 3);
}

TEST(AttentionScores, Mha4x4HeadDim32) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 4, .kv_heads = 4, .head_dim = 32, .lengths = {1, 2, 255, 256, 257, 5000}, .max_context = 8192}, 4);
}

// Group of 3 (SmolLM2-135M: 9 query / 3 KV heads, padded to a batch of 4 in registers).
TEST(AttentionScores, Gqa9x3HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 9, .kv_heads = 3, .head_dim = 64, .lengths = {2048}, .max_context = 2048}, 5);
  check_scores({.q_heads = 9, .kv_heads = 3, .head_dim = 64, .lengths = {1, 1000, 2047}, .max_context = 2048, .mean = true}, 6);
}

// Groups larger than a register batch (16 query heads on one KV head: 2 batches of 8 at
// head_dim 128, 4 of 4 at 32) and a group of 8 at head_dim 64.
TEST(AttentionScores, LargeGroups) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 16, .kv_heads = 1, .head_dim = 128, .lengths = {3, 700, 3000}, .max_context = 4096}, 7);
  check_scores({.q_heads = 16, .kv_heads = 1, .head_dim = 32, .lengths = {3, 700, 3000}, .max_context = 4096, .mean = true}, 8);
  check_scores({.q_heads = 16, .kv_heads = 2, .head_dim = 64, .lengths = {129, 4097}, .max_context = 8192}, 9);
  check_scores({.q_heads = 4, .kv_heads = 2, .head_dim = 128, .lengths = {129, 4097}, .max_context = 8192}, 10);
}

// One row per request over every query head (batch-level selection), both reductions.
TEST(AttentionScores, AllHeads) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {1, 300, 5000, 12000}, .max_context = 12288, .all_heads = true},
               11);
  check_scores({.q_heads = 9, .kv_heads = 3, .head_dim = 64, .lengths = {2, 2047}, .max_context = 2048, .all_heads = true, .mean = true},
               12);
}

// The oracle policy's reduction: mean over the group, the newest key forced in.
TEST(AttentionScores, MeanWithPinLast) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {1, 2, 300, 4097}, .max_context = 8192, .pin_last = true,
                .mean = true},
               13);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 32, .lengths = {1, 33, 1000}, .max_context = 1024, .pin_last = true, .mean = true},
               14);
}

// The retrieval head's layout: draft key j stands for LLM position j + 1, position 0 (the sink)
// is pinned in column 0, and the newest cached key is left out (length_offset -1), with and
// without a tight max_length and with all heads in one row.
TEST(AttentionScores, ColumnOffsetAndLengthOffset) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {1, 2, 3, 1000, 8192}, .max_context = 8192, .length_offset = -1,
                .column_offset = 1},
               15);
  check_scores({.q_heads = 32, .kv_heads = 8, .head_dim = 128, .lengths = {2, 258, 6001}, .max_context = 8192, .max_length = 6000,
                .length_offset = -1, .column_offset = 1, .all_heads = true},
               16);
  check_scores({.q_heads = 9, .kv_heads = 3, .head_dim = 64, .lengths = {5, 2048}, .max_context = 2048, .length_offset = -1,
                .column_offset = 3, .pin_last = true},
               17);
}

// Requests with no keys (length 0, or 1 with length_offset -1) write only their pinned columns;
// key counts past max_context are clamped to it.
TEST(AttentionScores, ZeroKeysAndClamping) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 64, .lengths = {0, 300, 0}, .max_context = 1024}, 18);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 64, .lengths = {1, 300, 0, 1}, .max_context = 1024, .length_offset = -1,
                .column_offset = 1, .pin_last = true},
               19);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 128, .lengths = {0, 0}, .max_context = 512, .column_offset = 2}, 20);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 64, .lengths = {1030, 5000, 1025}, .max_context = 1024, .length_offset = -1}, 21);
}

// One request over hundreds of chunks: the log-sum-exp merges many partials.
TEST(AttentionScores, SingleLongRequest) {
  SPECONTEXT_REQUIRE_GPU();
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 128, .lengths = {32768}, .max_context = 32768}, 22);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 32, .lengths = {30001}, .max_context = 32768, .all_heads = true, .mean = true},
               23);
}

// Many short requests: few chunks each, thousands of blocks.
TEST(AttentionScores, ManyRequests) {
  SPECONTEXT_REQUIRE_GPU();
  std::vector<int> lengths(1000);
  for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = 1 + static_cast<int>(rng::splitmix64(i) % 300);
  check_scores({.q_heads = 8, .kv_heads = 2, .head_dim = 64, .lengths = lengths, .max_context = 300}, 24);
  check_scores({.q_heads = 4, .kv_heads = 2, .head_dim = 32, .lengths = lengths, .max_context = 300, .length_offset = -1, .column_offset = 1,
                .pin_last = true, .mean = true},
               25);
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(AttentionScores, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  alignas(16) static float fake_out[64];
  static std::int32_t ints[4];
  kernels::AttentionScoresParams p;
  p.q = p.k_cache = fake;
  p.out = fake_out;
  p.slots = p.lengths = ints;
  p.requests = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 96;
  p.max_context = 1024;
  p.q_row_stride = 12 * 96;
  p.kv_head_stride = 1024 * 96;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.out_stride = 1024;
  p.scale = 0.1f;
  auto expect_message = [&](const char* needle) {
    try {
      kernels::launch_attention_scores(p, nullptr);
      ADD_FAILURE() << "accepted; expected a complaint about " << needle;
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind("attention_scores: ", 0), 0u) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  };
  expect_message("head_dim 96");
  p.head_dim = 128;
  p.q_row_stride = 12 * 128;
  p.kv_head_stride = 1024 * 128;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.kv_heads = 3;
  expect_message("kv_heads");  // 8 % 3 != 0
  p.kv_heads = 2;
  p.workspace = nullptr;
  p.workspace_bytes = 0;
  expect_message("workspace");
  p.workspace = reinterpret_cast<float*>(fake);
  p.workspace_bytes = 16;
  expect_message("workspace");
  p.workspace_bytes = kernels::attention_scores_workspace_bytes(2, 8, 1024);
  p.kv_head_stride = 1000 * 128;  // shorter than max_context rows
  expect_message("kv_head_stride");
  p.kv_head_stride = 1024 * 128;
  p.column_offset = 1;  // out_stride 1024 < 1024 + 1
  expect_message("out_stride");
  p.column_offset = -1;
  expect_message("column_offset");
  p.column_offset = 0;
  p.max_length = -5;
  expect_message("max_length");
  p.max_length = 0;
  p.scale = std::numeric_limits<float>::quiet_NaN();
  expect_message("scale");
  p.scale = 0.1f;
  p.q = fake + 1;  // not 16-byte aligned
  expect_message("aligned");
  p.q = fake;
  p.lengths = nullptr;
  expect_message("null");
  p.lengths = ints;
  p.q_heads = 512;
  p.kv_heads = 1;
  p.q_row_stride = 512 * 128;
  expect_message("q_heads");
  // Nothing to do is not an error, whatever else is set.
  p.requests = 0;
  EXPECT_NO_THROW(kernels::launch_attention_scores(p, nullptr));
}

TEST(AttentionScores, WorkspaceBytes) {
  EXPECT_EQ(kernels::attention_scores_workspace_bytes(0, 32, 1024), 0u);
  EXPECT_EQ(kernels::attention_scores_workspace_bytes(4, 0, 1024), 0u);
  // The fp32 logits of every (request, query head, key), plus a few percent for the partials.
  for (int max_context : {1, 1000, 40960, 262144}) {
    const double logits = 32.0 * 32 * max_context * sizeof(float);
    const double bytes = static_cast<double>(kernels::attention_scores_workspace_bytes(32, 32, max_context));
    EXPECT_GE(bytes, logits) << max_context;
    EXPECT_LE(bytes, logits * 1.02 + 32 * 32 * 24) << max_context;
  }
}

}  // namespace

// Two query heads, three keys, worked by hand (scale 1, head_dim 2): k0 = (1, 0), k1 = (0, 1),
// k2 = (0, 0); head 0's query (1, 0) gives logits 1, 0, 0, head 1's (0, 2) gives 0, 2, 0. So
// head 0's probabilities are (e, 1, 1) / (e + 2) and head 1's (1, e^2, 1) / (e^2 + 2).
class AttentionScoresReferenceByHand : public ::testing::Test {
 protected:
  static constexpr int kHd = 2, kMaxContext = 4;
  void SetUp() override {
    using ref::float_to_bf16;
    // Cache: 2 slots x 2 KV heads x 4 keys x 2 dims, NaN where nobody may read; request 0 lives
    // in slot 1 and both of its KV heads hold the same keys (so with MHA row g is head g's softmax).
    k.assign(2 * 2 * kMaxContext * kHd, float_to_bf16(std::numeric_limits<float>::quiet_NaN()));
    for (int g = 0; g < 2; ++g) {
      const float keys[3][2] = {{1, 0}, {0, 1}, {0, 0}};
      for (int j = 0; j < 3; ++j)
        for (int d = 0; d < kHd; ++d) k[((1 * 2 + g) * kMaxContext + j) * kHd + d] = float_to_bf16(keys[j][d]);
    }
    q = {float_to_bf16(1), 0, 0, float_to_bf16(2),  // request 0: heads 0 and 1
         float_to_bf16(5), 0, 0, float_to_bf16(-7)};
    p.q = q.data();
    p.q_row_stride = 4;
    p.k_cache = k.data();
    p.kv_head_stride = kMaxContext * kHd;
    p.kv_request_stride = 2 * p.kv_head_stride;
    p.slots = slots;
    p.lengths = lengths;
    p.requests = 2;
    p.q_heads = 2;
    p.kv_heads = 1;
    p.head_dim = kHd;
    p.max_context = kMaxContext;
    p.scale = 1.0f;
    p.out_stride = 5;
  }
  std::vector<std::uint16_t> k, q;
  std::int32_t slots[2] = {1, 0};
  std::int32_t lengths[2] = {3, 0};  // request 1 has no keys
  ref::AttentionScoresParams p;
  const double e = std::exp(1.0), e2 = std::exp(2.0);
  const double p0[3] = {e / (e + 2), 1 / (e + 2), 1 / (e + 2)};
  const double p1[3] = {1 / (e2 + 2), e2 / (e2 + 2), 1 / (e2 + 2)};
};

TEST_F(AttentionScoresReferenceByHand, MaxOverTheGroup) {
  const auto out = ref::attention_scores(p);
  ASSERT_EQ(out.size(), 10u);
  EXPECT_NEAR(out[0], p0[0], 1e-7);  // e / (e + 2) > 1 / (e^2 + 2)
  EXPECT_NEAR(out[1], p1[1], 1e-7);
  EXPECT_NEAR(out[2], p0[2], 1e-7);  // 1 / (e + 2) > 1 / (e^2 + 2)
  for (int j = 3; j < 10; ++j) EXPECT_TRUE(std::isnan(out[j])) << j;  // past the keys; request 1 has none
  // all_heads over a single KV head is the same row.
  p.all_heads = true;
  const auto all = ref::attention_scores(p);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(all[j], out[j]) << j;
}

TEST_F(AttentionScoresReferenceByHand, MeanWithColumnOffsetAndPinLast) {
  p.reduce = ref::AttentionScoresParams::Reduce::Mean;
  p.column_offset = 1;
  p.pin_last = true;
  const auto out = ref::attention_scores(p);
  ASSERT_EQ(out.size(), 10u);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(out[0], inf);  // pinned column
  EXPECT_NEAR(out[1], (p0[0] + p1[0]) / 2, 1e-7);
  EXPECT_NEAR(out[2], (p0[1] + p1[1]) / 2, 1e-7);
  EXPECT_EQ(out[3], inf);  // the last key, pinned after the reduction
  EXPECT_TRUE(std::isnan(out[4]));
  EXPECT_EQ(out[5], inf);  // request 1: only its pinned column
  for (int j = 6; j < 10; ++j) EXPECT_TRUE(std::isnan(out[j])) << j;
  // The mean of probabilities is itself a distribution over the keys.
  p.pin_last = false;
  const auto unpinned = ref::attention_scores(p);
  EXPECT_NEAR(unpinned[1] + unpinned[2] + unpinned[3], 1.0, 1e-6);
}

TEST_F(AttentionScoresReferenceByHand, OneRowPerKvHead) {
  p.kv_heads = 2;  // MHA: row g is head g's own softmax
  const auto out = ref::attention_scores(p);
  ASSERT_EQ(out.size(), 20u);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(out[j], p0[j], 1e-7) << j;
    EXPECT_NEAR(out[5 + j], p1[j], 1e-7) << j;
  }
  for (int j = 10; j < 20; ++j) EXPECT_TRUE(std::isnan(out[j])) << j;
}

// length_offset -1 and a max_length of 2 both leave keys 0 and 1: softmax over two logits.
TEST_F(AttentionScoresReferenceByHand, FewerKeys) {
  for (int variant = 0; variant < 2; ++variant) {
    p.length_offset = variant == 0 ? -1 : 0;
    p.max_length = variant == 0 ? 0 : 2;
    const auto out = ref::attention_scores(p);
    EXPECT_NEAR(out[0], e / (e + 1), 1e-7) << variant;        // head 0: (e, 1) / (e + 1)
    EXPECT_NEAR(out[1], e2 / (e2 + 1), 1e-7) << variant;      // head 1: (1, e^2) / (1 + e^2)
    EXPECT_TRUE(std::isnan(out[2])) << variant;               // key 2 is not scored
    EXPECT_EQ(ref::attention_scores_keys(p, 0), 2) << variant;
    EXPECT_EQ(ref::attention_scores_keys(p, 1), 0) << variant;  // 0 - 1 clamps to 0
  }
}

}  // namespace specontext
