// Sparse decode attention on the CPU reference (CpuBackend::decode_sparse) and the selection
// policies through PolicyBackend, on the tiny random-weight llama-gqa fixture (8 query heads, 2 KV
// heads, 2 layers): a selection of every position is decode() bit for bit (fixed sets, streaming and
// the oracle at B >= S); streaming's index set; the oracle's layer-0 set equals a brute-force top-B of
// the layer's own attention; a small budget changes the logits and lowers fidelity (the machinery is
// real); streaming's overlap of adjacent steps is (B - 1) / B; the attention mass captured is 1 for
// every position and at layer 0 (whose inputs are the same whatever the policy) the oracle's is at
// least streaming's at the same budget, step by step (the oracle's set maximises it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "engine/attention_mass.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/cpu_ops.hpp"
#include "engine/evaluator.hpp"
#include "engine/policy_backend.hpp"
#include "engine/rope.hpp"
#include "engine/safetensors.hpp"
#include "engine/selection_policy.hpp"
#include "tests/hf_fixture.hpp"

namespace specontext {
namespace {

using testing::random_tokens;

const testing::TinyModel& tiny() { return testing::tiny_llama_gqa(); }

TokenSelection every_position(int kv_heads, std::int64_t positions) {
  TokenSelection s;
  s.kv_heads = kv_heads;
  s.count = positions;
  for (int g = 0; g < kv_heads; ++g)
    for (std::int64_t p = 0; p < positions; ++p) s.indices.push_back(static_cast<std::int32_t>(p));
  return s;
}

TEST(SparseDecode, EveryPositionSelectedIsDenseBitForBit) {
  CpuBackend dense(tiny().config, tiny().weights, 2, 128), sparse(tiny().config, tiny().weights, 2, 128);
  const std::vector<int> a = random_tokens(1, 30), b = random_tokens(2, 17), next = random_tokens(3, 12);
  for (CpuBackend* c : {&dense, &sparse}) {
    c->prefill(0, a);
    c->prefill(1, b);
  }
  for (int step = 0; step < 6; ++step) {
    const std::vector<int> tokens = {next[2 * step], next[2 * step + 1]};
    const std::vector<float> want = dense.decode({0, 1}, tokens);
    // Request 0: a fixed set of every position but the entering one (always attended); request 1: the
    // oracle with a budget past its length (odd steps) or streaming at B >= S (even steps).
    const TokenSelection all0 = every_position(2, sparse.length(0));
    const TokenSelection stream1 = streaming_selection(2, sparse.length(1) + 1, 1000);
    std::vector<SparseAttention> att(2);
    att[0].selection = &all0;
    if (step % 2) att[1].oracle_budget = 1000;
    else att[1].selection = &stream1;
    const std::vector<float> got = sparse.decode_sparse({0, 1}, tokens, att);
    ASSERT_EQ(got, want) << "step " << step;
  }
}

TEST(SparseDecode, StreamingKeepsFourSinksAndTheMostRecent) {
  const TokenSelection s = streaming_selection(2, 20, 8);
  ASSERT_EQ(s.count, 8);
  for (int g = 0; g < 2; ++g) EXPECT_EQ(std::vector<std::int32_t>(s.head(g).begin(), s.head(g).end()), (std::vector<std::int32_t>{0, 1, 2, 3, 16, 17, 18, 19}));
  const TokenSelection small = streaming_selection(1, 20, 3);
  EXPECT_EQ(small.indices, (std::vector<std::int32_t>{0, 1, 2}));
  EXPECT_EQ(streaming_selection(1, 6, 100).indices, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_THROW(streaming_selection(1, 6, 0), std::invalid_argument);
}

TEST(SparseDecode, SelectionsAreChecked) {
  CpuBackend c(tiny().config, tiny().weights, 1, 64);
  c.prefill(0, random_tokens(4, 10));
  TokenSelection bad = every_position(2, 12);  // position 11 is past the entering token (10)
  std::vector<SparseAttention> att(1);
  att[0].selection = &bad;
  EXPECT_THROW(c.decode_sparse({0}, {5}, att), std::invalid_argument);
  TokenSelection one_head = every_position(1, 5);
  att[0].selection = &one_head;
  EXPECT_THROW(c.decode_sparse({0}, {5}, att), std::invalid_argument);
  EXPECT_EQ(c.length(0), 10);
}

// The oracle's layer-0 set, against the layer's attention recomputed from the cache: the query of the
// entering token (embedding, input norm, q projection, RoPE) against the cached keys 0..t.
TEST(SparseDecode, OracleSelectsTheTopOfTheLayersOwnAttention) {
  const ModelShape& s = tiny().config.shape;
  CpuBackend c(tiny().config, tiny().weights, 1, 128);
  const std::vector<int> prompt = random_tokens(5, 60);
  c.prefill(0, prompt);
  const std::int64_t budget = 9;
  const int token = 77;
  std::vector<TokenSelection> chosen;
  std::vector<SparseAttention> att(1);
  att[0].oracle_budget = budget;
  att[0].layer_selections = &chosen;
  const std::vector<float> sparse_logits = c.decode_sparse({0}, {token}, att);
  ASSERT_EQ(chosen.size(), static_cast<std::size_t>(s.layers));

  const std::int64_t t = 60, hd = s.head_dim, group = s.q_heads / s.kv_heads;
  const LayerWeights& L = tiny().weights.layers[0];
  cpu::RowMatrix x(1, s.hidden);
  for (long long i = 0; i < s.hidden; ++i) x(0, i) = tiny().weights.embed.data[token * s.hidden + i];
  cpu::RowMatrix q = cpu::linear(cpu::rms_norm(x, L.input_norm, tiny().config.rms_norm_eps), L.q, L.q_bias);
  cpu::apply_rope(q, 0, t, hd, rope_inverse_frequencies(tiny().config), rope_attention_factor(tiny().config));
  const std::vector<float>& keys = c.cached_keys(0, 0);
  for (long long g = 0; g < s.kv_heads; ++g) {
    std::vector<double> mean(t + 1, 0.0);
    for (long long h = g * group; h < (g + 1) * group; ++h) {
      std::vector<double> logit(t + 1);
      for (std::int64_t p = 0; p <= t; ++p) {
        double dot = 0;
        for (long long d = 0; d < hd; ++d) dot += double(q(0, h * hd + d)) * keys[p * s.kv_heads * hd + g * hd + d];
        logit[p] = dot / std::sqrt(double(hd));
      }
      const double top = *std::max_element(logit.begin(), logit.end());
      double sum = 0;
      for (double& v : logit) sum += (v = std::exp(v - top));
      for (std::int64_t p = 0; p <= t; ++p) mean[p] += logit[p] / sum / group;
    }
    mean[t] = std::numeric_limits<double>::infinity();
    std::vector<std::int32_t> order(t + 1);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mean[a] > mean[b]; });
    // Only where the B-th and (B+1)-th are clearly apart (fp32 against double).
    ASSERT_GT(mean[order[budget - 1]] - mean[order[budget]], 1e-6) << "a near-tie at the boundary; pick another seed";
    std::vector<std::int32_t> want(order.begin(), order.begin() + budget);
    std::sort(want.begin(), want.end());
    const auto got = chosen[0].head(static_cast<int>(g));
    EXPECT_EQ(std::vector<std::int32_t>(got.begin(), got.end()), want) << "KV head " << g;
  }
  // And the sparse step is not the dense one.
  CpuBackend d(tiny().config, tiny().weights, 1, 128);
  d.prefill(0, prompt);
  EXPECT_NE(d.decode({0}, {token}), sparse_logits);
}

TaskInstance fidelity_instance(int trial, std::uint32_t seed) {
  TaskInstance inst;
  inst.trial = trial;
  inst.prompt = random_tokens(seed, 48);
  inst.generate = 16;
  return inst;
}

TEST(SparseDecode, PoliciesThroughTheEvaluator) {
  CpuBackend cpu(tiny().config, tiny().weights, 2, 128);
  std::vector<TaskInstance> instances = {fidelity_instance(0, 11), fidelity_instance(1, 12)};
  make_fidelity_references(cpu, instances, {});

  PolicyBackend full(cpu, SelectionPolicy::Full, 0);
  EXPECT_EQ(evaluate(full, TaskKind::Fidelity, instances, nullptr, {}).summary.min, 1.0);
  EXPECT_FALSE(full.overlap_rate().has_value());

  PolicyBackend wide(cpu, SelectionPolicy::Streaming, 1000);  // B >= S: dense
  EXPECT_EQ(evaluate(wide, TaskKind::Fidelity, instances, nullptr, {}).summary.min, 1.0);

  PolicyBackend narrow(cpu, SelectionPolicy::Streaming, 8);
  const EvalResult r = evaluate(narrow, TaskKind::Fidelity, instances, nullptr, {});
  EXPECT_LT(r.summary.mean, 1.0);
  // Sinks 0..3 and the last 4: each step keeps 7 of the previous step's 8 positions.
  ASSERT_TRUE(narrow.overlap_rate().has_value());
  EXPECT_DOUBLE_EQ(*narrow.overlap_rate(), 7.0 / 8.0);
  EXPECT_EQ(narrow.overlap_samples(), 2 * 14);  // 15 decode steps per request, the first has no predecessor

  PolicyBackend oracle(cpu, SelectionPolicy::Oracle, 8);
  const EvalResult o = evaluate(oracle, TaskKind::Fidelity, instances, nullptr, {});
  ASSERT_TRUE(oracle.overlap_rate().has_value());
  EXPECT_GE(*oracle.overlap_rate(), 0.0);
  EXPECT_LE(*oracle.overlap_rate(), 1.0);
  EXPECT_EQ(oracle.last_selections(0).size(), static_cast<std::size_t>(tiny().config.shape.layers));
  RecordProperty("streaming_agreement", std::to_string(r.summary.mean));
  RecordProperty("oracle_agreement", std::to_string(o.summary.mean));

  EXPECT_THROW(PolicyBackend(cpu, SelectionPolicy::Streaming, 0), std::invalid_argument);
  EXPECT_THROW(PolicyBackend(cpu, SelectionPolicy::SpeContext, 8), std::invalid_argument);

  EXPECT_EQ(full.attention_mass(), nullptr);
  ASSERT_NE(wide.attention_mass(), nullptr);
  EXPECT_NEAR(*wide.attention_mass()->mean(), 1.0, 1e-6);
  EXPECT_GT(*narrow.attention_mass()->mean(), 0.0);
  EXPECT_LT(*narrow.attention_mass()->mean(), 1.0);
  EXPECT_EQ(oracle.attention_mass()->per_layer().size(), static_cast<std::size_t>(tiny().config.shape.layers));
}

TEST(SparseDecode, TheOracleCapturesTheMostAttentionMassAtLayerZero) {
  CpuBackend a(tiny().config, tiny().weights, 1, 128), b(tiny().config, tiny().weights, 1, 128);
  const std::vector<int> prompt = random_tokens(5, 40), next = random_tokens(6, 10);
  a.prefill(0, prompt);
  b.prefill(0, prompt);
  constexpr std::int64_t kBudget = 8;
  for (int step = 0; step < 10; ++step) {
    AttentionMassMeter oracle_mass, streaming_mass;
    std::vector<SparseAttention> oracle(1), streaming(1);
    oracle[0].oracle_budget = kBudget;
    oracle[0].mass = &oracle_mass;
    const TokenSelection window = streaming_selection(2, b.length(0) + 1, kBudget);
    streaming[0].selection = &window;
    streaming[0].mass = &streaming_mass;
    a.decode_sparse({0}, {next[step]}, oracle);
    b.decode_sparse({0}, {next[step]}, streaming);
    const double o = oracle_mass.per_layer().at(0), s = streaming_mass.per_layer().at(0);
    EXPECT_GE(o, s - 1e-6) << "step " << step;
    EXPECT_GT(s, 0.0);
    EXPECT_LT(o, 1.0);
  }
}

}  // namespace
}  // namespace specontext
