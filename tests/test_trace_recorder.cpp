// The trace recorder (engine/trace_recorder.hpp) on the tiny llama-gqa fixture with a seeded random
// EAGLE-3 draft: the rankings' prefixes are exactly the sets the policies choose in the engine
// (streaming_selection, quest_selection, select_positions), a recorded trace reads back with the
// attention lists the format promises, and the replay's attention mass at layer 0 of the first step
// equals what CpuBackend::decode_sparse measures for the same selection (layer 0 sees the same
// inputs whatever the policy, so this checks recorder + replay against the engine's own arithmetic).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/attention_mass.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/quest_selection.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/trace_recorder.hpp"
#include "sim/trace_replay.hpp"
#include "tests/gqa_draft.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/temp_dir.hpp"
#include "traces/trace_file.hpp"

namespace specontext {
namespace {

using testing::random_tokens;

const testing::TinyModel& tiny() { return testing::tiny_llama_gqa(); }

TEST(TraceRecorder, RankingsByHand) {
  const float scores[] = {0.1f, 0.5f, 0.5f, 0.9f, 0.0f};
  EXPECT_EQ(rank_positions(scores, 5, 10), (std::vector<std::int32_t>{3, 1, 2, 0, 4}));  // ties: the lower position first
  EXPECT_EQ(rank_positions(scores, 5, 2), (std::vector<std::int32_t>{3, 1}));
  EXPECT_EQ(streaming_ranking(10, 100), (std::vector<std::int32_t>{0, 1, 2, 3, 9, 8, 7, 6, 5, 4}));
  EXPECT_EQ(streaming_ranking(3, 100), (std::vector<std::int32_t>{0, 1, 2}));
  const float pages[] = {0.2f, 0.7f, 0.7f};  // 40 positions: pages of 16, 16 and 8
  std::vector<std::int32_t> want;
  for (int p = 16; p < 40; ++p) want.push_back(p);
  EXPECT_EQ(quest_ranking(pages, 40, 17), want);  // ceil(17 / 16) = 2 pages: 1, then 2 (tie, lower first)
}

TEST(TraceRecorder, RankingPrefixesAreThePoliciesSets) {
  for (std::int64_t positions : {5, 40, 300})
    for (std::int64_t budget : {1, 3, 4, 7, 64, 500}) {
      const TokenSelection s = streaming_selection(1, positions, budget);
      std::vector<std::int32_t> prefix = streaming_ranking(positions, budget);
      std::sort(prefix.begin(), prefix.end());
      EXPECT_EQ(prefix, s.indices) << positions << " positions, B = " << budget;
    }
  std::mt19937 gen(4);
  std::normal_distribution<float> n(0.0f, 1.0f);
  constexpr int kPositions = 203, kKvHeads = 2, kHeadDim = 8, kQHeads = 4;
  std::vector<float> keys(kPositions * kKvHeads * kHeadDim), q(kQHeads * kHeadDim);
  for (float& x : keys) x = n(gen);
  for (float& x : q) x = n(gen);
  const std::vector<float> page_scores = quest_page_scores(keys.data(), kPositions, kKvHeads, kHeadDim, q.data(), kQHeads);
  const std::int64_t pages = (kPositions + 15) / 16;
  for (std::int64_t budget : {1, 16, 17, 100, 1000}) {
    const QuestSelection chosen = quest_selection(keys.data(), kPositions, kKvHeads, kHeadDim, q.data(), kQHeads, budget);
    for (int g = 0; g < kKvHeads; ++g) {
      std::vector<std::int32_t> ranked = quest_ranking(page_scores.data() + g * pages, kPositions, budget);
      std::sort(ranked.begin(), ranked.end());
      EXPECT_EQ(ranked, chosen.positions[static_cast<std::size_t>(g)]) << "B = " << budget << " head " << g;
    }
  }
}

TEST(TraceRecorder, RecordsReadBackAndTheReplaysMassIsTheEnginesAtLayerZero) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "tiny.trace").string();
  const std::vector<int> prompt = random_tokens(31, 150);
  constexpr std::int64_t kBMax = 40, kBudget = 24;
  {
    CpuBackend llm(tiny().config, tiny().weights, 1, 256);
    RetrievalHeadCpu head(testing::gqa_draft(7, 3.0f), &llm.weights().embed, 1, 256);
    TraceRecordOptions o;
    o.policies = {SelectionPolicy::SpeContext, SelectionPolicy::SpeContextBatch, SelectionPolicy::Quest, SelectionPolicy::Streaming};
    o.b_max = kBMax;
    o.max_new = 3;
    const std::vector<std::vector<int>> prompts = {prompt, random_tokens(32, 90)};
    traces::TraceHeader h = trace_header(tiny().config, o, prompts);
    h.model = "llama-gqa";
    h.task = "test";
    h.backend = "cpu";
    traces::TraceWriter w(path, h);
    Recordable<CpuBackend> recordable(llm);
    EXPECT_EQ(record_traces(recordable, &head, prompts, o, w), 6);
    w.close();
  }
  const traces::Trace trace = traces::read_trace(path);
  ASSERT_EQ(trace.steps.size(), 6u);
  EXPECT_EQ(trace.steps[0].position, 150);
  EXPECT_EQ(trace.steps[2].position, 152);
  EXPECT_EQ(trace.steps[3].request, 1);
  EXPECT_EQ(trace.steps[3].position, 90);
  for (const traces::StepRecord& r : trace.steps) {
    double total = 0;  // the top b_max of a distribution over t + 1 positions: most of its mass
    for (float p : r.attention[0].probabilities) total += p;
    EXPECT_GT(total, 0.5);
    EXPECT_LE(total, 1.0 + 1e-2);
  }

  // The engine's mass at layer 0 of the first step of the first prompt, for each policy's set at kBudget.
  CpuBackend twin(tiny().config, tiny().weights, 1, 256);
  RetrievalHeadCpu twin_head(testing::gqa_draft(7, 3.0f), &twin.weights().embed, 1, 256);
  twin.set_feature_layers(twin_head.config().aux_layers);
  const std::vector<float> logits = twin.prefill(0, prompt);
  twin_head.prefill(0, prompt, twin.features(0));
  const std::vector<float>& f = twin.features(0);
  const std::vector<float> features(f.end() - twin.feature_width(), f.end());
  const int token = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const HeadAttention a = twin_head.decode(0, token, features);
  traces::Trace first = trace;
  first.steps.resize(1);
  ReplayOptions ro;
  ro.budgets = {kBudget};
  const std::vector<ReplayResult> replayed = replay_trace(first, ro);
  const auto replayed_layer0 = [&](const std::string& policy) {
    for (const ReplayResult& r : replayed)
      if (r.policy == policy) return r.recall_per_layer.at(0);
    ADD_FAILURE() << "no replay of " << policy;
    return -1.0;
  };
  const auto engine_layer0 = [&](SparseAttention att) {
    CpuBackend copy = twin;  // the prefilled state, so every policy decodes the same step
    AttentionMassMeter mass;
    att.mass = &mass;
    copy.decode_sparse({0}, {token}, {att});
    return mass.per_layer().at(0);
  };
  const TokenSelection head_level = select_positions(a, kBudget, SelectionLevel::Head);
  const TokenSelection batch_level = select_positions(a, kBudget, SelectionLevel::Batch);
  const TokenSelection window = streaming_selection(2, 151, kBudget);
  SparseAttention s1, s2, s3, s4;
  s1.selection = &head_level;
  s2.selection = &batch_level;
  s3.selection = &window;
  s4.quest_budget = kBudget;
  // binary16 probabilities: relative error 2^-11 each, so a sum is within ~1e-3 of the exact one.
  EXPECT_NEAR(replayed_layer0("specontext"), engine_layer0(s1), 2e-3);
  EXPECT_NEAR(replayed_layer0("specontext-batch"), engine_layer0(s2), 2e-3);
  EXPECT_NEAR(replayed_layer0("streaming"), engine_layer0(s3), 2e-3);
  EXPECT_NEAR(replayed_layer0("quest"), engine_layer0(s4), 2e-3);
}

}  // namespace
}  // namespace specontext
