// Tests of sim/trace_replay: recall, overlap, selection sizes and bytes to load, computed by hand on
// traces built in memory (probabilities are sums of powers of two, so the sums are exact), which
// list of a ranking applies to which layer and head, paged policies, t, and the errors; plus a
// trace written with TraceWriter and read back.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "sim/config_error.hpp"
#include "sim/model_shape.hpp"
#include "sim/trace_replay.hpp"
#include "tests/expect_config_error.hpp"
#include "tests/temp_dir.hpp"
#include "traces/trace_file.hpp"

using namespace specontext;
using specontext::testing::expect_config_error_naming;

namespace {

traces::TracePolicy policy(const std::string& name, bool per_layer, bool head_level, int page_size = 1) {
  traces::TracePolicy p;
  p.name = name;
  p.per_layer = per_layer;
  p.head_level = head_level;
  p.page_size = page_size;
  return p;
}

traces::TraceHeader header(int layers, int kv_heads, std::int64_t b_max, std::vector<traces::TracePolicy> policies) {
  traces::TraceHeader h;
  h.model = "hand-made";
  h.task = "unit";
  h.prompt_source = "test_trace_replay.cpp";
  h.backend = "cpu";
  h.config_hash = "0000000000000000";
  h.layers = layers;
  h.q_heads = kv_heads;
  h.kv_heads = kv_heads;
  h.head_dim = 4;
  h.b_max = b_max;
  h.prompt_tokens = 8;
  h.max_new = 2;
  h.requests = 1;
  h.policies = std::move(policies);
  return h;
}

// An attention list from (position, probability) pairs already sorted by probability.
traces::HeadAttention attention(const std::vector<std::pair<int, float>>& entries) {
  traces::HeadAttention a;
  for (const auto& [pos, p] : entries) {
    a.positions.push_back(pos);
    a.probabilities.push_back(p);
  }
  return a;
}

traces::StepRecord record(int request, int step, std::int64_t t, std::vector<traces::HeadAttention> att,
                          std::vector<std::vector<std::vector<std::int32_t>>> rankings) {
  traces::StepRecord r;
  r.request = request;
  r.step = step;
  r.position = t;
  r.attention = std::move(att);
  r.rankings = std::move(rankings);
  return r;
}

// Every hand-made trace is a valid one by the format's own check.
traces::Trace valid(traces::Trace t) {
  for (std::size_t i = 0; i < t.steps.size(); ++i) traces::check_record(t.header, t.steps[i], "record " + std::to_string(i));
  return t;
}

const ReplayResult& find(const std::vector<ReplayResult>& results, const std::string& policy, std::int64_t budget) {
  for (const auto& r : results)
    if (r.policy == policy && r.budget == budget) return r;
  throw std::runtime_error("no result for " + policy + " at " + std::to_string(budget));
}

// 1 layer, 1 KV head, t = 9: position 3 0.375, 9 (t) 0.25, 1 0.125, 7 0.0625, 0 0.03125, 5 0.015625.
const std::vector<std::pair<int, float>> kOneHead = {{3, 0.375f}, {9, 0.25f}, {1, 0.125f}, {7, 0.0625f}, {0, 0.03125f}, {5, 0.015625f}};

traces::Trace one_head_trace() {
  traces::Trace t;
  t.header = header(1, 1, 4, {policy("hand", false, true)});
  t.steps.push_back(record(0, 0, 9, {attention(kOneHead)}, {{{7, 0, 3, 5}}}));
  return valid(std::move(t));
}

TEST(TraceReplay, RecallOfAHandRankingIsTheSumOverItsFirstBPositionsAndT) {
  const auto results = replay_trace(one_head_trace(), {{3, 2, 1}, nullptr});
  // The oracle first, then the header's policies; budgets ascending.
  ASSERT_EQ(results.size(), 6u);
  EXPECT_EQ(results[0].policy, "oracle");
  EXPECT_EQ(results[0].budget, 1);
  EXPECT_EQ(results[2].budget, 3);
  EXPECT_EQ(results[3].policy, "hand");

  // B = 1: {7} + t: 0.0625 + 0.25.
  EXPECT_DOUBLE_EQ(find(results, "hand", 1).recall.mean, 0.3125);
  // B = 2: {7, 0} + t.
  const auto& b2 = find(results, "hand", 2);
  EXPECT_DOUBLE_EQ(b2.recall.mean, 0.0625 + 0.03125 + 0.25);
  EXPECT_DOUBLE_EQ(b2.recall.min, b2.recall.mean);
  EXPECT_DOUBLE_EQ(b2.recall.max, b2.recall.mean);
  EXPECT_DOUBLE_EQ(b2.selected, 3.0);
  ASSERT_EQ(b2.recall_per_layer.size(), 1u);
  EXPECT_DOUBLE_EQ(b2.recall_per_layer[0], b2.recall.mean);
  // B = 3: {7, 0, 3} + t.
  EXPECT_DOUBLE_EQ(find(results, "hand", 3).recall.mean, 0.0625 + 0.03125 + 0.375 + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "hand", 3).selected, 4.0);
  // One step: no overlap, and no bytes without a target.
  EXPECT_FALSE(b2.overlap.has_value());
  EXPECT_FALSE(b2.load_bytes_per_step.has_value());
}

TEST(TraceReplay, OracleIsTheTopBProbabilitiesSum) {
  const auto results = replay_trace(one_head_trace(), {{1, 2, 3, 4}, nullptr});
  // B = 1: {3} is the top, t is added: 0.375 + 0.25, two positions selected.
  EXPECT_DOUBLE_EQ(find(results, "oracle", 1).recall.mean, 0.375 + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "oracle", 1).selected, 2.0);
  // B >= 2: t is among the top B; the recall is the top-B sum exactly.
  EXPECT_DOUBLE_EQ(find(results, "oracle", 2).recall.mean, 0.375 + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "oracle", 2).selected, 2.0);
  EXPECT_DOUBLE_EQ(find(results, "oracle", 3).recall.mean, 0.375 + 0.25 + 0.125);
  EXPECT_DOUBLE_EQ(find(results, "oracle", 4).recall.mean, 0.375 + 0.25 + 0.125 + 0.0625);
  // The oracle never captures less than a policy at the same budget.
  for (std::int64_t b = 1; b <= 4; ++b) EXPECT_GE(find(results, "oracle", b).recall.mean, find(results, "hand", b).recall.mean);
}

// 1 layer, 2 KV heads, t = 5, each head's attention different.
std::vector<traces::HeadAttention> two_heads() {
  return {attention({{0, 0.5f}, {5, 0.25f}, {1, 0.125f}, {2, 0.0625f}}), attention({{2, 0.5f}, {1, 0.25f}, {5, 0.125f}, {0, 0.0625f}})};
}

TEST(TraceReplay, ABatchLevelRankingAppliesToEveryHead) {
  traces::Trace t;
  t.header = header(1, 2, 4, {policy("batch", false, false), policy("heads", false, true)});
  // batch: one list [1, 2] for both heads; heads: [0] for head 0 and [2] for head 1.
  t.steps.push_back(record(0, 0, 5, two_heads(), {{{1, 2}}, {{0}, {2}}}));
  const auto results = replay_trace(valid(t), {{2}, nullptr});
  // batch, B = 2: head 0 {1, 2} + 5 = 0.125 + 0.0625 + 0.25; head 1 {1, 2} + 5 = 0.25 + 0.5 + 0.125.
  const double h0 = 0.125 + 0.0625 + 0.25, h1 = 0.25 + 0.5 + 0.125;
  EXPECT_DOUBLE_EQ(find(results, "batch", 2).recall.mean, (h0 + h1) / 2);
  EXPECT_DOUBLE_EQ(find(results, "batch", 2).selected, 3.0);
  // heads: head 0 {0} + 5, head 1 {2} + 5.
  EXPECT_DOUBLE_EQ(find(results, "heads", 2).recall.mean, ((0.5 + 0.25) + (0.5 + 0.125)) / 2);
  EXPECT_DOUBLE_EQ(find(results, "heads", 2).selected, 2.0);
}

TEST(TraceReplay, APerLayerRankingAppliesPerLayerAndASharedOneToEveryLayer) {
  traces::Trace t;
  t.header = header(2, 1, 4, {policy("per-layer", true, true), policy("shared", false, true)});
  // Layer 0 and layer 1 attention (1 KV head each): the two_heads() lists reused as layers.
  // per-layer: [1] at layer 0, [0] at layer 1. shared: [2] at both layers.
  t.steps.push_back(record(0, 0, 5, two_heads(), {{{1}, {0}}, {{2}}}));
  const auto results = replay_trace(valid(t), {{1}, nullptr});
  const auto& per_layer = find(results, "per-layer", 1);
  ASSERT_EQ(per_layer.recall_per_layer.size(), 2u);
  EXPECT_DOUBLE_EQ(per_layer.recall_per_layer[0], 0.125 + 0.25);   // {1} + 5 at layer 0
  EXPECT_DOUBLE_EQ(per_layer.recall_per_layer[1], 0.0625 + 0.125);  // {0} + 5 at layer 1
  EXPECT_DOUBLE_EQ(per_layer.recall.mean, (0.375 + 0.1875) / 2);
  const auto& shared = find(results, "shared", 1);
  EXPECT_DOUBLE_EQ(shared.recall_per_layer[0], 0.0625 + 0.25);  // {2} + 5 at layer 0
  EXPECT_DOUBLE_EQ(shared.recall_per_layer[1], 0.5 + 0.125);    // {2} + 5 at layer 1
  // The oracle per layer: layer 0's top is 0, layer 1's is 2.
  EXPECT_DOUBLE_EQ(find(results, "oracle", 1).recall_per_layer[0], 0.5 + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "oracle", 1).recall_per_layer[1], 0.5 + 0.125);
}

TEST(TraceReplay, TheSharedOracleRanksTheAttentionSummedOverLayers) {
  traces::Trace t;
  t.header = header(2, 1, 4, {policy("shared", false, true)});
  // Layer 0 {0: 1/2, 5: 1/4, 1: 1/8, 2: 1/16}, layer 1 {2: 1/2, 1: 1/4, 5: 1/8, 0: 1/16}: summed,
  // 0 and 2 have 9/16, 1 and 5 have 3/8, so the shared ranking is 0, 2, 1, 5 (ties: the lower).
  t.steps.push_back(record(0, 0, 5, two_heads(), {{{2}}}));
  EXPECT_THROW(find(replay_trace(valid(t), {{1}, nullptr}), kSharedOraclePolicy, 1), std::runtime_error) << "only when asked";
  ReplayOptions o{{1, 2}, nullptr};
  o.shared_oracle = true;
  const auto results = replay_trace(valid(t), o);
  ASSERT_EQ(results.size(), 6u);
  EXPECT_EQ(results[2].policy, kSharedOraclePolicy);  // after the oracle, before the recorded policies
  const auto& b1 = find(results, kSharedOraclePolicy, 1);
  EXPECT_DOUBLE_EQ(b1.recall_per_layer[0], 0.5 + 0.25);     // {0} + t = 5
  EXPECT_DOUBLE_EQ(b1.recall_per_layer[1], 0.0625 + 0.125);
  const auto& b2 = find(results, kSharedOraclePolicy, 2);
  EXPECT_DOUBLE_EQ(b2.recall.mean, ((0.5 + 0.0625 + 0.25) + (0.0625 + 0.5 + 0.125)) / 2);  // {0, 2} + t
  // Below the per-layer oracle ({0, 5} and {2, 1} + t), above the recorded shared set {2} + t at B = 1.
  EXPECT_DOUBLE_EQ(find(results, "oracle", 2).recall.mean, ((0.5 + 0.25) + (0.5 + 0.25 + 0.125)) / 2);
  EXPECT_GE(b1.recall.mean, find(results, "shared", 1).recall.mean);
}

TEST(TraceReplay, APagedPolicyTakesWholePagesInRankOrder) {
  // t = 12, pages of 4: the ranking lists page 2 (8..11), then page 0 (0..3), then page 1 (4..7).
  traces::Trace t;
  t.header = header(1, 1, 12, {policy("paged", true, true, 4)});
  std::vector<std::pair<int, float>> entries;
  // Probability 2^-(k+2) for position k = 0..11, and t = 12 gets 0.25 (sorted by probability, ties by position).
  entries.push_back({0, 0.25f});
  entries.push_back({12, 0.25f});
  for (int k = 1; k < 12; ++k) entries.push_back({k, 1.0f / static_cast<float>(1 << (k + 2))});
  t.steps.push_back(record(0, 0, 12, {attention(entries)}, {{{8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7}}}));
  const auto results = replay_trace(valid(t), {{4, 5, 12}, nullptr});
  auto mass = [&](int from, int to) {  // positions from..to-1
    double m = 0;
    for (const auto& [pos, p] : entries)
      if (pos >= from && pos < to) m += p;
    return m;
  };
  // B = 4: one page (8..11) + t; B = 5: two pages (8..11, 0..3) + t; B = 12: all three.
  EXPECT_DOUBLE_EQ(find(results, "paged", 4).selected, 5.0);
  EXPECT_DOUBLE_EQ(find(results, "paged", 4).recall.mean, mass(8, 12) + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "paged", 5).selected, 9.0);
  EXPECT_DOUBLE_EQ(find(results, "paged", 5).recall.mean, mass(8, 12) + mass(0, 4) + 0.25);
  EXPECT_DOUBLE_EQ(find(results, "paged", 12).selected, 13.0);
  EXPECT_DOUBLE_EQ(find(results, "paged", 12).recall.mean, mass(0, 13));
}

TEST(TraceReplay, APagedRankingShorterThanItsPagesGivesWhatItHas) {
  // A ranking of 6 positions (page 1 cut short before t): B = 5 wants 2 pages (8 positions), gets 6.
  traces::Trace t;
  t.header = header(1, 1, 8, {policy("paged", true, true, 4)});
  t.steps.push_back(record(0, 0, 6, {attention({{6, 0.5f}, {0, 0.25f}, {1, 0.125f}, {2, 0.0625f}, {3, 0.03125f}, {4, 0.015625f}, {5, 0.0078125f}})},
                           {{{0, 1, 2, 3, 4, 5}}}));
  const auto results = replay_trace(valid(t), {{5}, nullptr});
  EXPECT_DOUBLE_EQ(find(results, "paged", 5).selected, 7.0);
  EXPECT_DOUBLE_EQ(find(results, "paged", 5).recall.mean, 1.0 - 0.0078125);
}

// Request 0: steps 0 (t = 10) and 1 (t = 11); request 1: steps 0 and 1 (t = 10, 11), interleaved in
// the file as r0s0, r1s0, r1s1, r0s1.
traces::Trace two_requests() {
  traces::Trace t;
  t.header = header(1, 1, 4, {policy("hand", false, true)});
  t.header.requests = 2;
  t.header.prompt_tokens = 10;
  auto att = [](int tpos) {
    return std::vector<traces::HeadAttention>{
        attention({{tpos, 0.5f}, {3, 0.125f}, {4, 0.0625f}, {2, 0.03125f}, {1, 0.015625f}, {10, 0.0078125f}})};
  };
  const std::vector<traces::HeadAttention> att0 = {attention({{10, 0.5f}, {3, 0.125f}, {4, 0.0625f}, {2, 0.03125f}, {1, 0.015625f}})};
  t.steps.push_back(record(0, 0, 10, att0, {{{2, 3, 4}}}));
  t.steps.push_back(record(1, 0, 10, att0, {{{1, 2, 3}}}));
  t.steps.push_back(record(1, 1, 11, att(11), {{{1, 2, 3}}}));
  t.steps.push_back(record(0, 1, 11, att(11), {{{3, 4, 10}}}));
  return valid(std::move(t));
}

TEST(TraceReplay, OverlapPairsStepsOfTheSameRequestWithoutT) {
  const auto results = replay_trace(two_requests(), {{3}, nullptr});
  const auto& r = find(results, "hand", 3);
  // Request 0: S_prev = {2, 3, 4} (t = 10 not counted), S_now = {3, 4, 10} (t = 11 not counted):
  // 2 / 3. With t counted it would be 3 / 3 or 3 / 4. Request 1: {1, 2, 3} twice: 1.
  ASSERT_TRUE(r.overlap.has_value());
  EXPECT_DOUBLE_EQ(*r.overlap, (2.0 / 3.0 + 1.0) / 2.0);
  // Every step selects 3 positions and t (absent from every ranking except as an earlier t).
  EXPECT_DOUBLE_EQ(r.selected, 4.0);
  // The oracle at B = 2: request 0 step 0 {10, 3}, step 1 {11, 3}: 1 / 2; request 1 the same.
  EXPECT_DOUBLE_EQ(*find(replay_trace(two_requests(), {{2}, nullptr}), "oracle", 2).overlap, 0.5);
  EXPECT_DOUBLE_EQ(trace_overlap(two_requests(), "hand", 3), *r.overlap);
  EXPECT_DOUBLE_EQ(trace_overlap(two_requests(), "oracle", 2), 0.5);
}

TEST(TraceReplay, WithOneLayerTheSharedOracleIsTheOracle) {
  ReplayOptions o{{1, 2, 3}, nullptr};
  o.shared_oracle = true;
  const auto results = replay_trace(two_requests(), o);
  for (std::int64_t b : {1, 2, 3}) {
    EXPECT_DOUBLE_EQ(find(results, kSharedOraclePolicy, b).recall.mean, find(results, "oracle", b).recall.mean) << b;
    EXPECT_DOUBLE_EQ(*find(results, kSharedOraclePolicy, b).overlap, *find(results, "oracle", b).overlap) << b;
  }
  EXPECT_DOUBLE_EQ(trace_overlap(two_requests(), kSharedOraclePolicy, 2), 0.5);
}

TEST(TraceReplay, OverlapNeedsTheSameRequestsPreviousStep) {
  // Two requests with one step each: no pair, however the records are ordered.
  traces::Trace t = two_requests();
  t.steps.erase(t.steps.begin() + 2, t.steps.end());  // r0s0, r1s0
  EXPECT_FALSE(find(replay_trace(t, {{3}, nullptr}), "hand", 3).overlap.has_value());
  expect_config_error_naming([&] { trace_overlap(t, "hand", 3); }, {"2 decode steps"});
}

TEST(TraceReplay, LoadBytesScaleTheOverlapToTheTarget) {
  ModelShape target;
  target.name = "tiny";
  target.layers = 2;
  target.kv_heads = 2;
  target.head_dim = 4;
  const auto results = replay_trace(two_requests(), {{3, 4}, &target});
  // B = 3: (1 - 5/6) * 3 * 2 heads * 2 layers * 2 (K, V) * 4 dims * 2 bytes = 32.
  ASSERT_TRUE(find(results, "hand", 3).load_bytes_per_step.has_value());
  EXPECT_NEAR(*find(results, "hand", 3).load_bytes_per_step, 32.0, 1e-9);
  // B = 4: the rankings hold 3 positions, so B_eff = 3 and the overlap is the same: 32 again.
  EXPECT_NEAR(*find(results, "hand", 4).load_bytes_per_step, 32.0, 1e-9);
  // The oracle at B = 4: the attention lists hold 5 and 6 positions; selections {10,3,4,2} then
  // {11,3,4,2}: overlap 3/4, B_eff = 4: (1/4) * 4 * 64 = 64.
  EXPECT_NEAR(*find(results, "oracle", 4).overlap, 0.75, 1e-12);
  EXPECT_NEAR(*find(results, "oracle", 4).load_bytes_per_step, 64.0, 1e-9);
}

TEST(TraceReplay, RecallSpreadIsOverSteps) {
  const auto results = replay_trace(two_requests(), {{1}, nullptr});
  const auto& r = find(results, "hand", 1);
  // Step recalls: r0s0 {2} + 10: 0.53125; r1s0 {1} + 10: 0.515625; r1s1 {1} + 11: 0.515625;
  // r0s1 {3} + 11: 0.625.
  EXPECT_DOUBLE_EQ(r.recall.min, 0.515625);
  EXPECT_DOUBLE_EQ(r.recall.max, 0.625);
  EXPECT_DOUBLE_EQ(r.recall.mean, (0.53125 + 0.515625 * 2 + 0.625) / 4);
  // Sorted: 0.515625, 0.515625, 0.53125, 0.625: p10 at 0.3 -> 0.515625, p90 at 2.7 -> 0.53125 + 0.7 * 0.09375.
  EXPECT_DOUBLE_EQ(r.recall.p10, 0.515625);
  EXPECT_DOUBLE_EQ(r.recall.p90, 0.53125 + 0.7 * 0.09375);
}

TEST(TraceReplay, BudgetsOutsideOneToBMaxAreConfigErrors) {
  expect_config_error_naming([] { replay_trace(one_head_trace(), {{0}, nullptr}); }, {"--budgets", "1..4", "b_max"});
  expect_config_error_naming([] { replay_trace(one_head_trace(), {{2, 5}, nullptr}); }, {"--budgets", "5", "b_max"});
  expect_config_error_naming([] { replay_trace(one_head_trace(), {{}, nullptr}); }, {"--budgets"});
  expect_config_error_naming([] { trace_overlap(two_requests(), "hand", 5); }, {"--budget", "b_max"});
}

TEST(TraceReplay, TraceOverlapNamesAnUnrecordedPolicyAndTheRecordedOnes) {
  expect_config_error_naming([] { trace_overlap(two_requests(), "quest", 2); }, {"'quest'", "hand", "oracle"});
}

TEST(TraceReplay, AWrittenTraceReplaysAsInMemory) {
  specontext::testing::TempDir dir("trace-replay");
  const auto path = dir.path() / "two-requests.trace";
  const traces::Trace t = two_requests();
  {
    traces::TraceWriter w(path, t.header);
    for (const auto& r : t.steps) w.write(r);
    w.close();
  }
  const traces::Trace back = traces::read_trace(path);
  const auto a = replay_trace(t, {{1, 2, 3, 4}, nullptr});
  const auto b = replay_trace(back, {{1, 2, 3, 4}, nullptr});
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].policy, b[i].policy);
    EXPECT_EQ(a[i].budget, b[i].budget);
    // Powers of two survive binary16 exactly.
    EXPECT_DOUBLE_EQ(a[i].recall.mean, b[i].recall.mean);
    EXPECT_EQ(a[i].overlap, b[i].overlap);
    EXPECT_DOUBLE_EQ(a[i].selected, b[i].selected);
  }
  const auto j = to_json(b.front());
  EXPECT_EQ(j.at("policy"), "oracle");
  EXPECT_TRUE(j.at("recall").contains("per_layer"));
  EXPECT_TRUE(j.at("load_bytes_per_step").is_null());
}

}  // namespace
