// Tests of engine/token_selection and engine/retrieval_head on hand-made and tiny random inputs:
// head-level vs batch-level selection with hand-computed indices, ties, budgets past the context,
// the GQA/MQA/MHA reduction, keys against a naive computation of EAGLE-3's formula, and one request
// built by one prefill or by a short prefill and many decode steps giving the same keys and scores.
// tests/test_retrieval_head_golden.cpp checks the real draft against PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/retrieval_head.hpp"
#include "sim/config_error.hpp"
#include "engine/token_selection.hpp"
#include "tests/tiny_eagle3.hpp"

namespace specontext {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<std::int32_t> row(const TokenSelection& s, int head) {
  const auto r = s.head(head);
  return {r.begin(), r.end()};
}

using Ids = std::vector<std::int32_t>;

TEST(TokenSelection, HeadLevelAndBatchLevelByHand) {
  // Two KV heads over six positions; position 0 forced in as the retrieval head does.
  const std::vector<float> scores = {kInf, 0.5f, 0.1f, 0.3f,  0.3f, 0.0f,   // head 0: positions 3 and 4 tie
                                     kInf, 0.0f, 0.6f, 0.05f, 0.2f, 0.4f};  // head 1
  const TokenSelection head = select_top_b(scores, 2, 6, 3, SelectionLevel::Head);
  EXPECT_EQ(head.count, 3);
  EXPECT_EQ(row(head, 0), (Ids{0, 1, 3}));  // the tie at 0.3 goes to the lower position
  EXPECT_EQ(row(head, 1), (Ids{0, 2, 5}));

  // Batch-level: the max over heads is {inf, 0.5, 0.6, 0.3, 0.3, 0.4}; one set, in every head's row.
  const TokenSelection batch = select_top_b(scores, 2, 6, 3, SelectionLevel::Batch);
  EXPECT_EQ(row(batch, 0), (Ids{0, 1, 2}));
  EXPECT_EQ(row(batch, 1), (Ids{0, 1, 2}));
  EXPECT_EQ(row(select_top_b(scores, 2, 6, 4, SelectionLevel::Batch), 1), (Ids{0, 1, 2, 5}));
  EXPECT_EQ(row(select_top_b(scores, 2, 6, 5, SelectionLevel::Batch), 0), (Ids{0, 1, 2, 3, 5}));
  EXPECT_EQ(row(select_top_b(scores, 2, 6, 5, SelectionLevel::Head), 0), (Ids{0, 1, 2, 3, 4}));
  EXPECT_EQ(row(select_top_b(scores, 2, 6, 1, SelectionLevel::Head), 1), (Ids{0}));
}

TEST(TokenSelection, BudgetAtOrPastTheContextKeepsEverything) {
  const std::vector<float> scores = {0.2f, 0.1f, 0.4f, 0.3f, 0.0f, 0.9f};  // 3 heads x 2 positions
  for (std::int64_t budget : {2, 3, 1000})
    for (SelectionLevel level : {SelectionLevel::Head, SelectionLevel::Batch}) {
      const TokenSelection s = select_top_b(scores, 3, 2, budget, level);
      EXPECT_EQ(s.count, 2);
      for (int g = 0; g < 3; ++g) EXPECT_EQ(row(s, g), (Ids{0, 1}));
    }
}

TEST(TokenSelection, EqualScoresGoToTheLowerPositions) {
  const std::vector<float> flat(100, 0.25f);
  EXPECT_EQ(row(select_top_b(flat, 1, 100, 4, SelectionLevel::Head), 0), (Ids{0, 1, 2, 3}));
}

TEST(TokenSelection, RejectsBadInput) {
  const std::vector<float> scores = {0.1f, 0.2f, 0.3f, 0.4f};
  EXPECT_THROW(select_top_b(scores, 2, 2, 0, SelectionLevel::Head), std::invalid_argument);
  EXPECT_THROW(select_top_b(scores, 2, 3, 1, SelectionLevel::Head), std::invalid_argument);
  EXPECT_THROW(select_top_b(scores, 0, 4, 1, SelectionLevel::Head), std::invalid_argument);
  const std::vector<float> nan = {0.1f, std::nanf(""), 0.3f, 0.4f};
  EXPECT_THROW(select_top_b(nan, 2, 2, 1, SelectionLevel::Batch), std::invalid_argument);
}

TEST(HeadAttention, GroupMaxPerKvHeadWithPositionZeroKept) {
  HeadAttention a;
  a.q_heads = 4;
  a.kv_heads = 2;
  a.keys = 3;  // LLM positions 0..3
  a.probs = {0.1f, 0.7f, 0.2f,   // query head 0 \ KV head 0
             0.5f, 0.2f, 0.3f,   // query head 1 /
             0.3f, 0.3f, 0.4f,   // query head 2 \ KV head 1
             0.6f, 0.1f, 0.3f};  // query head 3 /
  EXPECT_EQ(a.kv_head_scores(), (std::vector<float>{kInf, 0.5f, 0.7f, 0.3f, kInf, 0.6f, 0.3f, 0.4f}));
  const TokenSelection head = select_positions(a, 2, SelectionLevel::Head);
  EXPECT_EQ(row(head, 0), (Ids{0, 2}));
  EXPECT_EQ(row(head, 1), (Ids{0, 1}));
  // Batch-level: max over all heads {inf, 0.6, 0.7, 0.4}.
  EXPECT_EQ(row(select_positions(a, 3, SelectionLevel::Batch), 1), (Ids{0, 1, 2}));
  EXPECT_EQ(row(select_positions(a, 3, SelectionLevel::Head), 1), (Ids{0, 1, 3}));

  HeadAttention mqa = a;  // one KV head: the max over all four query heads
  mqa.kv_heads = 1;
  EXPECT_EQ(mqa.kv_head_scores(), (std::vector<float>{kInf, 0.6f, 0.7f, 0.4f}));
  HeadAttention mha = a;  // a KV head per query head: its own scores
  mha.kv_heads = 4;
  const std::vector<float> s = mha.kv_head_scores();
  EXPECT_EQ(std::vector<float>(s.begin() + 12, s.end()), (std::vector<float>{kInf, 0.6f, 0.1f, 0.3f}));
}

// A tiny draft with random weights and its own embedding, and random tokens and features.
struct TinyCase {
  Eagle3Draft draft;
  std::vector<int> tokens;
  std::vector<float> features;  // [tokens, 3 * 32]
};

TinyCase tiny_case(int n) {
  TinyCase c;
  c.draft.config = parse_eagle3_draft_config(testing::tiny_draft_json(), "tiny-draft.json", testing::tiny_target());
  c.draft.weights = testing::random_draft_weights(c.draft.config, 3, /*with_embedding=*/true);
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> token(0, 49);
  for (int i = 0; i < n; ++i) c.tokens.push_back(token(gen));
  c.features = testing::random_values(static_cast<std::size_t>(n * 96), 9, 0.0f, 2.0f);
  return c;
}

// EAGLE-3's key for draft position j, written out naively in double: k = Wk [rms(e) * w_in ; rms(fc f) * w_h]
// (embedding first), then rotate_half RoPE at position j.
// `embed_only`: the embed input mode, whose fc half is zero.
std::vector<double> naive_key(const Eagle3Draft& d, int next_token, const float* feature_row, int position, bool embed_only = false) {
  const Eagle3DraftWeights& w = d.weights;
  const ModelShape& s = d.config.layer.shape;
  const int h = static_cast<int>(s.hidden), hd = static_cast<int>(s.head_dim), width = static_cast<int>(w.fc.cols);
  const double eps = d.config.layer.rms_norm_eps;
  std::vector<double> e(h), f(h), x(2 * h);
  for (int i = 0; i < h; ++i) e[i] = w.embed.data[static_cast<std::size_t>(next_token * h + i)];
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < width; ++j) f[i] += double(w.fc.data[static_cast<std::size_t>(i * width + j)]) * feature_row[j];
  auto rms = [&](const std::vector<double>& v, const std::vector<float>& weight, double* out) {
    double ss = 0;
    for (double a : v) ss += a * a;
    const double inv = 1.0 / std::sqrt(ss / h + eps);
    for (int i = 0; i < h; ++i) out[i] = weight[i] * v[i] * inv;
  };
  rms(e, w.input_norm, x.data());
  if (!embed_only) rms(f, w.hidden_norm, x.data() + h);
  std::vector<double> k(static_cast<std::size_t>(s.kv_heads * hd));
  for (std::size_t r = 0; r < k.size(); ++r)
    for (int j = 0; j < 2 * h; ++j) k[r] += double(w.k.data[r * 2 * h + j]) * x[j];
  for (int g = 0; g < s.kv_heads; ++g)
    for (int i = 0; i < hd / 2; ++i) {
      const double angle = position * std::pow(d.config.layer.rope.theta, -2.0 * i / hd);
      double& a = k[g * hd + i];
      double& b = k[g * hd + i + hd / 2];
      const double a0 = a, b0 = b;
      a = a0 * std::cos(angle) - b0 * std::sin(angle);
      b = b0 * std::cos(angle) + a0 * std::sin(angle);
    }
  return k;
}

TEST(RetrievalHeadCpu, KeysFollowEagle3sFormulaWithNextTokenAlignment) {
  const TinyCase c = tiny_case(8);
  RetrievalHeadCpu head(c.draft, nullptr, 1, 64);
  head.prefill(0, c.tokens, c.features);
  EXPECT_EQ(head.length(0), 8);
  for (int g = 0; g < 2; ++g) EXPECT_EQ(head.cached_keys(0, g).size(), 7u * 8u);  // 8 tokens give keys 0..6
  for (int j : {0, 1, 6}) {
    // Draft key j: token j+1's embedding with the features of position j.
    const std::vector<double> want = naive_key(c.draft, c.tokens[j + 1], c.features.data() + j * 96, j);
    for (int g = 0; g < 2; ++g)
      for (int i = 0; i < 8; ++i) EXPECT_NEAR(head.cached_keys(0, g)[j * 8 + i], want[g * 8 + i], 1e-4) << j << " " << g << " " << i;
  }
}

// The embed input mode: keys from the embedding half alone, the same whatever the features.
TEST(RetrievalHeadCpu, EmbedInputIgnoresTheFeatures) {
  const TinyCase c = tiny_case(8);
  RetrievalHeadCpu head(c.draft, nullptr, 1, 64, HeadInput::Embed), other(c.draft, nullptr, 1, 64, HeadInput::Embed);
  head.prefill(0, c.tokens, c.features);
  std::vector<float> scrambled(c.features.rbegin(), c.features.rend());
  other.prefill(0, c.tokens, scrambled);
  for (int j : {0, 3, 6}) {
    const std::vector<double> want = naive_key(c.draft, c.tokens[j + 1], c.features.data() + j * 96, j, /*embed_only=*/true);
    for (int g = 0; g < 2; ++g)
      for (int i = 0; i < 8; ++i) {
        EXPECT_NEAR(head.cached_keys(0, g)[j * 8 + i], want[g * 8 + i], 1e-4) << j << " " << g << " " << i;
        EXPECT_EQ(head.cached_keys(0, g)[j * 8 + i], other.cached_keys(0, g)[j * 8 + i]);
      }
  }
  const HeadAttention a = head.decode(0, 3, std::vector<float>(96, 1.0f)), b = other.decode(0, 3, std::vector<float>(96, -5.0f));
  EXPECT_EQ(a.probs, b.probs);
  RetrievalHeadCpu eagle(c.draft, nullptr, 1, 64);
  eagle.prefill(0, c.tokens, c.features);
  EXPECT_NE(std::vector<float>(eagle.cached_keys(0, 0).begin(), eagle.cached_keys(0, 0).end()),
            std::vector<float>(head.cached_keys(0, 0).begin(), head.cached_keys(0, 0).end()));
  EXPECT_EQ(parse_head_input("embed", "--head-input"), HeadInput::Embed);
  EXPECT_THROW(parse_head_input("both", "--head-input"), ConfigError);
}

TEST(RetrievalHeadCpu, PrefillOrDecodeStepsGiveTheSameKeysAndScores) {
  // 150 positions, so that the decode path grows its cache past the first capacity (64 keys).
  const int n = 150;
  const TinyCase c = tiny_case(n + 1);
  RetrievalHeadCpu head(c.draft, nullptr, 2, 256);
  const std::vector<int> prompt(c.tokens.begin(), c.tokens.begin() + n);
  const std::span<const float> features(c.features.data(), static_cast<std::size_t>(n * 96));
  // Request 0: one prefill of n tokens, then the step that feeds token n.
  head.prefill(0, prompt, features);
  const HeadAttention one = head.decode(0, c.tokens[n], features.subspan((n - 1) * 96, 96));
  // Request 1: a prefill of 5 tokens, then every other token through decode steps.
  head.prefill(1, std::span(prompt).first(5), features.first(5 * 96));
  HeadAttention many;
  for (int t = 5; t <= n; ++t) {
    many = head.decode(1, c.tokens[t], features.subspan((t - 1) * 96, 96));
    EXPECT_EQ(many.keys, t);
  }
  EXPECT_EQ(head.length(0), n + 1);
  EXPECT_EQ(head.length(1), n + 1);
  for (int g = 0; g < 2; ++g) {
    const auto a = head.cached_keys(0, g), b = head.cached_keys(1, g);
    ASSERT_EQ(a.size(), static_cast<std::size_t>(n * 8));
    ASSERT_EQ(b.size(), a.size());
    for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f) << g << " " << i;
  }
  ASSERT_EQ(one.keys, n);
  ASSERT_EQ(one.probs.size(), static_cast<std::size_t>(4 * n));
  for (std::size_t i = 0; i < one.probs.size(); ++i) ASSERT_NEAR(one.probs[i], many.probs[i], 1e-6f) << i;
  for (int h = 0; h < 4; ++h)
    EXPECT_NEAR(std::accumulate(one.probs.begin() + h * n, one.probs.begin() + (h + 1) * n, 0.0), 1.0, 1e-5);
  const TokenSelection s = select_positions(one, 16, SelectionLevel::Head);
  EXPECT_EQ(s.kv_heads, 2);
  EXPECT_EQ(s.count, 16);
  for (int g = 0; g < 2; ++g) EXPECT_EQ(s.head(g)[0], 0);  // LLM position 0 always kept
  EXPECT_EQ(select_positions(one, n + 1, SelectionLevel::Batch).count, n + 1);
}

TEST(RetrievalHeadCpu, RejectsMisuse) {
  const TinyCase c = tiny_case(6);
  const std::span<const float> row(c.features.data(), 96);
  RetrievalHeadCpu head(c.draft, nullptr, 1, 6);
  EXPECT_THROW(head.decode(0, c.tokens[0], row), std::invalid_argument);  // no prefill: no previous features
  EXPECT_THROW(head.prefill(0, c.tokens, std::span(c.features).first(95)), std::invalid_argument);
  EXPECT_THROW(head.prefill(0, std::vector<int>{1, 50}, std::span(c.features).first(192)), std::invalid_argument);
  EXPECT_THROW(head.prefill(1, c.tokens, c.features), std::invalid_argument);
  head.prefill(0, std::span(c.tokens).first(5), std::span(c.features).first(5 * 96));
  EXPECT_THROW(head.prefill(0, c.tokens, c.features), std::invalid_argument);  // not empty
  EXPECT_THROW(head.decode(0, 3, row.first(95)), std::invalid_argument);
  EXPECT_THROW(head.decode(0, -1, row), std::invalid_argument);
  head.decode(0, 3, row);
  EXPECT_THROW(head.decode(0, 3, row), std::invalid_argument);  // max_context 6 reached
  head.reset(0);
  EXPECT_EQ(head.length(0), 0);

  Eagle3Draft no_embedding = c.draft;
  no_embedding.weights.embed = {};
  EXPECT_THROW(RetrievalHeadCpu(no_embedding, nullptr, 1, 8), std::invalid_argument);
  const Matrix narrow = testing::random_matrix(50, 16, 1);
  EXPECT_THROW(RetrievalHeadCpu(no_embedding, &narrow, 1, 8), std::invalid_argument);
  const Matrix target_embedding = testing::random_matrix(50, 32, 1);
  EXPECT_NO_THROW(RetrievalHeadCpu(no_embedding, &target_embedding, 1, 8));
  Eagle3Draft bad_k = c.draft;
  bad_k.weights.k.rows = 8;
  EXPECT_THROW(RetrievalHeadCpu(bad_k, nullptr, 1, 8), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
