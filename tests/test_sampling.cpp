// Tests of engine/sampling: greedy ties, top-p, temperature frequencies against the softmax,
// the uniform draw's determinism and range, and the default Backend::decode_sample.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <vector>

#include "engine/sampling.hpp"

using namespace specontext;

TEST(Sampling, GreedyTakesFirstMaximum) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  SamplingParams greedy;
  EXPECT_EQ(sample_token(logits.data(), 5, greedy, 0.0), 1);
  EXPECT_EQ(sample_token(logits.data(), 5, greedy, 0.99), 1);  // u is ignored
  const std::vector<float> all_equal(7, 3.0f);
  EXPECT_EQ(sample_token(all_equal.data(), 7, greedy, 0.5), 0);
}

TEST(Sampling, TinyTopPIsArgmax) {
  const std::vector<float> logits = {0.1f, 0.3f, 1.5f, 1.4f, -2.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 1e-6f;
  for (double u : {0.0, 0.25, 0.5, 0.999999}) EXPECT_EQ(sample_token(logits.data(), 5, p, u), 2) << "u " << u;
}

TEST(Sampling, TopPKeepsSmallestPrefixReachingMass) {
  // Probabilities 0.5, 0.25, 0.125, 0.125 (log-weights); top_p 0.7 keeps {0, 1} (mass 0.75),
  // renormalised to 2/3 and 1/3.
  const std::vector<float> logits = {std::log(0.125f), std::log(0.5f), std::log(0.125f), std::log(0.25f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.0), 1);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.66), 1);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.67), 3);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.999), 3);
  // top_p 1 keeps everything and the draw walks in index order: cumulative 0.125, 0.625, 0.75, 1.
  p.top_p = 1.0f;
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.10), 0);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.60), 1);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.70), 2);
  EXPECT_EQ(sample_token(logits.data(), 4, p, 0.80), 3);
}

TEST(Sampling, TemperatureFrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  SamplingParams p;
  p.temperature = 0.7f;
  p.seed = 42;
  std::vector<double> expected(5);
  double total = 0.0;
  for (int i = 0; i < 5; ++i) total += expected[i] = std::exp(logits[i] / 0.7);
  for (double& e : expected) e /= total;

  const int draws = 200000;
  std::vector<int> counts(5, 0);
  for (int s = 0; s < draws; ++s) ++counts[sample_token(logits.data(), 5, p, sampling_uniform(p.seed, s, 0))];
  for (int i = 0; i < 5; ++i) {
    const double freq = static_cast<double>(counts[i]) / draws;
    const double sigma = std::sqrt(expected[i] * (1 - expected[i]) / draws);
    EXPECT_NEAR(freq, expected[i], 5 * sigma) << "token " << i;
  }
}

TEST(Sampling, UniformIsDeterministicAndInRange) {
  EXPECT_EQ(sampling_uniform(7, 3, 2), sampling_uniform(7, 3, 2));
  EXPECT_NE(sampling_uniform(7, 3, 2), sampling_uniform(8, 3, 2));
  EXPECT_NE(sampling_uniform(7, 3, 2), sampling_uniform(7, 4, 2));
  EXPECT_NE(sampling_uniform(7, 3, 2), sampling_uniform(7, 3, 1));
  std::set<double> distinct;
  double sum = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = sampling_uniform(1, i / 8, i % 8);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    distinct.insert(u);
    sum += u;
  }
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(n));
  EXPECT_NEAR(sum / n, 0.5, 5 * std::sqrt(1.0 / 12.0 / n));
}

TEST(Sampling, RejectsBadInput) {
  const std::vector<float> nan_logits = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  SamplingParams p;
  EXPECT_THROW(sample_token(nan_logits.data(), 2, p, 0.5), std::invalid_argument);
  const std::vector<float> logits = {0.0f, 1.0f};
  EXPECT_THROW(sample_token(logits.data(), 0, p, 0.5), std::invalid_argument);
  p.temperature = 1.0f;
  EXPECT_THROW(sample_token(logits.data(), 2, p, 1.0), std::invalid_argument);
  const float ninf = -std::numeric_limits<float>::infinity();
  // Every token masked: like the kernel, the first index of the maximum.
  const std::vector<float> masked = {ninf, ninf};
  EXPECT_EQ(sample_token(masked.data(), 2, p, 0.5), 0);
  // Masked tokens are never drawn.
  const std::vector<float> partly_masked = {ninf, 0.0f, ninf};
  for (double u : {0.0, 0.5, 0.999}) EXPECT_EQ(sample_token(partly_masked.data(), 3, p, u), 1);
}
