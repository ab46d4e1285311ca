// kernels/sample against its CPU reference token for token, and the reference's definition:
// greedy ties, top_p -> argmax, and draw frequencies that follow the kept softmax.
#include <cmath>
#include <limits>
#include <random>

#include "kernels/reference/sample.hpp"
#include "kernels/sample.cuh"
#include "kernels/sample_math.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

std::vector<float> random_logits(std::size_t n, std::uint32_t seed, float std) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

std::vector<std::int32_t> run_gpu(const std::vector<float>& logits, const std::vector<float>& u, std::int64_t rows, std::int64_t vocab,
                                  std::int64_t stride, float t, float top_p) {
  DeviceBuffer<float> d_logits(logits), d_u(u);
  DeviceBuffer<std::int32_t> d_out(static_cast<std::size_t>(rows));
  kernels::launch_sample({d_logits.get(), d_u.get(), d_out.get(), rows, vocab, stride, t, top_p}, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  return d_out.download();
}

TEST(Sample, MatchesTheReferenceTokenForToken) {
  SPECONTEXT_REQUIRE_GPU();
  const std::int64_t rows = 6;
  for (std::int64_t vocab : {5, 1000, 32000, 128256, 151936, 262144}) {
    const std::int64_t stride = vocab + 3;
    std::vector<float> logits = random_logits(static_cast<std::size_t>(rows * stride), static_cast<std::uint32_t>(vocab), 3.0f);
    logits[2 * stride + vocab / 2] = 40.0f;  // a peaked row
    for (std::int64_t i = 0; i < vocab; ++i) logits[3 * stride + i] = std::floor(logits[3 * stride + i]);  // many ties
    logits[4 * stride + vocab - 1] = -std::numeric_limits<float>::infinity();
    std::mt19937 gen(99);
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    for (float t : {0.0f, 0.7f, 1.0f, 1.5f}) {
      for (float top_p : {1.0f, 0.95f, 0.5f, 1e-6f}) {
        std::vector<float> u(static_cast<std::size_t>(rows));
        for (auto& x : u) x = std::min(ud(gen), 0.99999994f);
        u[0] = 0.0f;
        u[5] = 0.99999994f;  // the largest float below 1
        EXPECT_EQ(run_gpu(logits, u, rows, vocab, stride, t, top_p), ref::sample(logits, rows, vocab, stride, u, t, top_p))
            << "vocab " << vocab << " T " << t << " top_p " << top_p;
      }
    }
  }
}

TEST(Sample, GreedyEdgeCases) {
  SPECONTEXT_REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity();
  const std::int64_t vocab = 3000;
  std::vector<float> logits(static_cast<std::size_t>(3 * vocab), -inf);  // row 0: all -inf -> 0
  logits[vocab + 2999] = 1.0f;                                           // row 1: last index
  logits[vocab + 1024] = 1.0f;                                           // ... tie: the first wins
  logits[2 * vocab + 7] = inf;                                           // row 2: +inf, sampled too
  const std::vector<float> u = {0.5f, 0.5f, 0.5f};
  EXPECT_EQ(run_gpu(logits, u, 3, vocab, vocab, 0.0f, 1.0f), (std::vector<std::int32_t>{0, 1024, 7}));
  EXPECT_EQ(run_gpu(logits, u, 3, vocab, vocab, 1.0f, 0.9f), ref::sample(logits, 3, vocab, vocab, u, 1.0f, 0.9f));
}

}  // namespace

TEST(SampleReference, ExpIsAccurateAndExactAtZero) {
  for (float x = -44.0f; x <= 0.0f; x += 0.01371f) EXPECT_NEAR(sampling_math::exp_nonpositive(x), std::exp(x), std::exp(x) * 3e-6) << x;
  EXPECT_NEAR(sampling_math::exp_nonpositive(0.0f), 1.0f, 3e-7);
  EXPECT_EQ(sampling_math::exp_nonpositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(sampling_math::exp_nonpositive(-50.0f), 0.0f);  // below 2^-64
}

TEST(SampleReference, GreedyTakesTheFirstMaximum) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f};
  EXPECT_EQ(ref::sample_row(logits.data(), 5, 0.0f, 1.0f, 0.9f), 1);
  EXPECT_EQ(ref::sample_row(logits.data(), 5, -1.0f, 0.5f, 0.1f), 1);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> all_neg_inf = {-inf, -inf, -inf};
  EXPECT_EQ(ref::sample_row(all_neg_inf.data(), 3, 1.0f, 0.9f, 0.5f), 0);
  const std::vector<float> pos_inf = {0.0f, inf, 2.0f, inf};
  EXPECT_EQ(ref::sample_row(pos_inf.data(), 4, 1.0f, 1.0f, 0.99f), 1);
}

TEST(SampleReference, TinyTopPIsArgmax) {
  std::mt19937 gen(5);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> logits(5000);
  for (auto& x : logits) x = d(gen);
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  for (float top_p : {1e-6f, 0.0f, -1.0f})
    for (float u : {0.0f, 0.3f, 0.99999994f}) EXPECT_EQ(ref::sample_row(logits.data(), 5000, 0.8f, top_p, u), static_cast<std::int32_t>(best));
}

TEST(SampleReference, ThresholdKeepsTheSmallestPrefixAndItsTies) {
  // Probabilities 0.5, 0.2, 0.3 (T = 1): top_p 0.6 needs 0.5 + 0.3, so τ = 0.3 and token 1 goes.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.2f), std::log(0.3f)};
  EXPECT_NEAR(ref::sample_threshold(logits.data(), 3, 1.0f, 0.6f), 0.6f, 1e-5);  // 0.3 / 0.5 (max token = 1)
  EXPECT_NEAR(ref::sample_threshold(logits.data(), 3, 1.0f, 0.45f), 1.0f, 1e-5);  // the top token alone
  EXPECT_EQ(ref::sample_threshold(logits.data(), 3, 1.0f, 1.0f), 0.0f);
  // Ties at τ are all kept: 0.4, 0.3, 0.3 with top_p 0.5 keeps all three.
  const std::vector<float> tied = {std::log(0.4f), std::log(0.3f), std::log(0.3f)};
  const float tau = ref::sample_threshold(tied.data(), 3, 1.0f, 0.5f);
  EXPECT_NEAR(tau, 0.75f, 1e-5);
  int drawn[3] = {0, 0, 0};
  const int n = 10000;
  for (int k = 0; k < n; ++k) ++drawn[ref::sample_row(tied.data(), 3, 1.0f, 0.5f, (k + 0.5f) / n)];
  EXPECT_NEAR(drawn[0], 0.4 * n, 2);
  EXPECT_NEAR(drawn[1], 0.3 * n, 2);
  EXPECT_NEAR(drawn[2], 0.3 * n, 2);
}

TEST(SampleReference, FrequenciesFollowTheKeptSoftmax) {
  // A u grid stands in for uniform draws: each token's share of the grid is its kept probability
  // to within a grid step (the walk is in index order, so each token owns one interval of u).
  std::mt19937 gen(17);
  std::normal_distribution<float> d(0.0f, 1.5f);
  const std::int64_t vocab = 64;
  std::vector<float> logits(vocab);
  for (auto& x : logits) x = d(gen);
  for (float temperature : {0.6f, 1.0f}) {
    for (float top_p : {1.0f, 0.8f, 0.3f}) {
      const float tau = ref::sample_threshold(logits.data(), vocab, temperature, top_p);
      double max_logit = logits[0];
      for (float x : logits) max_logit = std::max<double>(max_logit, x);
      std::vector<double> p(vocab);
      double kept = 0.0, all = 0.0;
      for (std::int64_t i = 0; i < vocab; ++i) {
        const double e = std::exp((logits[i] - max_logit) / temperature);
        all += e;
        if (sampling_math::token_prob(logits[i], static_cast<float>(max_logit), temperature) >= tau) {
          p[i] = e;
          kept += e;
        }
      }
      EXPECT_GE(kept / all, top_p * (1 - 1e-5)) << "the kept set reaches top_p";
      const int n = 20000;
      std::vector<int> count(vocab, 0);
      for (int k = 0; k < n; ++k) ++count[ref::sample_row(logits.data(), vocab, temperature, top_p, (k + 0.5f) / n)];
      for (std::int64_t i = 0; i < vocab; ++i)
        EXPECT_NEAR(count[i] / static_cast<double>(n), p[i] / kept, 1.5e-4 + 1e-5 * p[i] / kept) << "token " << i << " T " << temperature << " top_p " << top_p;
    }
  }
}

TEST(SampleReference, DrawPointIsBelowTheKeptMass) {
  EXPECT_EQ(sampling_math::draw_point(0.99999994f, 10), 9u);
  EXPECT_EQ(sampling_math::draw_point(0.0f, 10), 0u);
  EXPECT_EQ(sampling_math::top_p_target(0.0f, 1000), 1u);
  EXPECT_EQ(sampling_math::top_p_target(0.5f, 1000), 500u);
}

}  // namespace specontext
