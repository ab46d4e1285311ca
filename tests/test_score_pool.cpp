// Pooling of the retrieval head's scores (kernels/reference/score_pool.hpp): the reference on rows
// worked out by hand, the flags' parsing, and what selection ranks with it (head- and batch-level).
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "engine/retrieval_head.hpp"
#include "kernels/reference/score_pool.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> pool(const std::vector<float>& in, ScorePooling p) {
  std::vector<float> out(in.size(), -1.0f);
  ref::score_pool_row(in.data(), out.data(), static_cast<std::int64_t>(in.size()), p);
  return out;
}

ScorePooling pooling(ScorePoolKind kind, int radius, std::int64_t recent = 0) {
  ScorePooling p;
  p.kind = kind;
  p.radius = radius;
  p.recent = recent;
  return p;
}

TEST(ScorePool, MaxOverTheNeighboursWithoutTheSink) {
  const std::vector<float> in = {kInf, 1, 5, 2, 0, 3};
  // position 1's window is [1, 2] (the sink is never in a window), position 5's is [4, 5]
  EXPECT_EQ(pool(in, pooling(ScorePoolKind::Max, 1)), (std::vector<float>{kInf, 5, 5, 5, 3, 3}));
  // a radius wider than the row: every position gets the row's max past the sink
  EXPECT_EQ(pool(in, pooling(ScorePoolKind::Max, 64)), (std::vector<float>{kInf, 5, 5, 5, 5, 5}));
}

TEST(ScorePool, MeanDividesByTheWindowInsideTheRow) {
  const std::vector<float> in = {kInf, 1, 5, 3, 0, 4};
  const std::vector<float> got = pool(in, pooling(ScorePoolKind::Mean, 1));
  const std::vector<float> want = {kInf, 3.0f, 3.0f, 8.0f / 3.0f, 7.0f / 3.0f, 2.0f};  // [1,2] [1,3] [2,4] [3,5] [4,5]
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(got[i], want[i]) << i;
}

TEST(ScorePool, RecentWindowIsForcedAndNoneIsTheIdentity) {
  const std::vector<float> in = {kInf, 0.5f, 0.1f, 0.2f, 0.3f};
  EXPECT_EQ(pool(in, ScorePooling{}), in);
  EXPECT_EQ(pool(in, pooling(ScorePoolKind::None, 0, 2)), (std::vector<float>{kInf, 0.5f, 0.1f, kInf, kInf}));
  // a window longer than the row forces every position; the sink stays as it was
  EXPECT_EQ(pool(in, pooling(ScorePoolKind::Max, 1, 99)), (std::vector<float>(5, kInf)));
  // one position: the sink alone
  EXPECT_EQ(pool({kInf}, pooling(ScorePoolKind::Mean, 3, 4)), (std::vector<float>{kInf}));
  EXPECT_FALSE(ScorePooling{}.active());
  EXPECT_FALSE(pooling(ScorePoolKind::Max, 0).active());
  EXPECT_TRUE(pooling(ScorePoolKind::None, 0, 1).active());
}

TEST(ScorePool, ParsesTheFlagsAndRejectsBadOnes) {
  const ScorePooling m = parse_score_pooling("mean:3", 32, "--head-pool", "--head-recent");
  EXPECT_EQ(m.kind, ScorePoolKind::Mean);
  EXPECT_EQ(m.radius, 3);
  EXPECT_EQ(m.recent, 32);
  EXPECT_EQ(to_string(m), "mean:3, recent 32");
  EXPECT_EQ(to_string(parse_score_pooling("max:64", 0, "a", "b")), "max:64");
  EXPECT_EQ(to_string(parse_score_pooling("none", 0, "a", "b")), "none");
  for (const char* bad : {"max", "max:", "max:0", "max:65", "mean:-1", "mean:3x", "avg:3", "max:1000"})
    EXPECT_THROW(parse_score_pooling(bad, 0, "--head-pool", "--head-recent"), ConfigError) << bad;
  EXPECT_THROW(parse_score_pooling("none", -1, "--head-pool", "--head-recent"), ConfigError);
}

// Two KV heads of two query heads each over LLM positions 0..5 (keys 0..4).
HeadAttention two_heads(ScorePooling p) {
  HeadAttention a;
  a.q_heads = 4;
  a.kv_heads = 2;
  a.keys = 5;
  a.pooling = p;
  a.probs = {0.1f, 0.6f, 0.1f, 0.1f, 0.1f,   // KV head 0: group max {0.1, 0.6, 0.1, 0.1, 0.1}
             0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
             0.0f, 0.0f, 0.0f, 0.9f, 0.1f,   // KV head 1: group max {0.0, 0.0, 0.0, 0.9, 0.1}
             0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  return a;
}

TEST(ScorePool, SelectionRanksThePooledScores) {
  // KV head 0 over positions 0..5: {inf, 0.1, 0.6, 0.1, 0.1, 0.1}; KV head 1: {inf, 0, 0, 0, 0.9, 0.1}.
  const HeadAttention plain = two_heads({});
  EXPECT_EQ(plain.selection_scores(SelectionLevel::Head), plain.kv_head_scores());
  const HeadAttention pooled = two_heads(pooling(ScorePoolKind::Max, 1));
  EXPECT_EQ(pooled.selection_scores(SelectionLevel::Head),
            (std::vector<float>{kInf, 0.6f, 0.6f, 0.6f, 0.1f, 0.1f, kInf, 0.0f, 0.0f, 0.9f, 0.9f, 0.9f}));
  // Batch-level pools the max over the heads {inf, 0.1, 0.6, 0.1, 0.9, 0.1}: mean of [3, 5] = 1.1 / 3.
  const HeadAttention mean = two_heads(pooling(ScorePoolKind::Mean, 1));
  const std::vector<float> batch = mean.selection_scores(SelectionLevel::Batch);
  ASSERT_EQ(batch.size(), 12u);
  EXPECT_FLOAT_EQ(batch[5], (0.9f + 0.1f) / 2.0f);
  EXPECT_FLOAT_EQ(batch[4], (0.1f + 0.9f + 0.1f) / 3.0f);
  for (int j = 0; j < 6; ++j) EXPECT_EQ(batch[j], batch[6 + j]) << "every KV head reads the one batch row";
  // Top-2 (with the sink): head 0 keeps the peak's neighbour 1 (tie with 2 and 3 -> lowest), head 1 keeps 3.
  const TokenSelection s = select_positions(pooled, 2, SelectionLevel::Head);
  EXPECT_EQ(std::vector<std::int32_t>(s.head(0).begin(), s.head(0).end()), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(std::vector<std::int32_t>(s.head(1).begin(), s.head(1).end()), (std::vector<std::int32_t>{0, 3}));
  // A recent window of 2 forces positions 4 and 5 in before any score.
  const TokenSelection r = select_positions(two_heads(pooling(ScorePoolKind::None, 0, 2)), 3, SelectionLevel::Head);
  EXPECT_EQ(std::vector<std::int32_t>(r.head(0).begin(), r.head(0).end()), (std::vector<std::int32_t>{0, 4, 5}));
}

}  // namespace
}  // namespace specontext
