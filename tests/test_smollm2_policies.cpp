// The selection policies on the real pair, end to end on the CPU: SmolLM2-135M-Instruct with the
// retrieval head of models/smollm2-eagle3 (specontext, head-level) on a passkey trial at context 512
// with B = 128: the head is fed the LLM's own features, its selection drives every decode step, and
// the overlap of adjacent steps' selections is a rate. No accuracy is asserted (one trial; the
// numbers live in the report of `specontext eval`). Skips without the GGUF.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "engine/cpu_backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/evaluator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/policy_backend.hpp"
#include "engine/retrieval_head.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;

TEST(SmolLM2Policies, SpeContextRunsAPasskeyTrialAndReportsItsOverlap) {
  const fs::path gguf = testing::smollm2_gguf();
  const fs::path draft_dir = testing::smollm2_draft_dir();
  if (!fs::exists(gguf)) GTEST_SKIP() << "no " << gguf << " (scripts/fetch_smollm2.sh fetches it)";
  if (!fs::exists(draft_dir) || !fs::exists(testing::committed_heldout_dir())) GTEST_SKIP() << "no draft or held-out text";
  const GgufFile file(gguf);
  const ModelConfig config = gguf_engine_config(file);
  const Tokenizer tok = Tokenizer::from_gguf(file);
  const std::vector<TaskInstance> instances = testing::committed_passkey_instances(tok, 512, 1);

  CpuBackend cpu(config, gguf_weights(config, file), 1, 512);
  RetrievalHeadCpu head(load_eagle3_draft(draft_dir, config), &cpu.weights().embed, 1, 512);
  PolicyBackend sparse(cpu, SelectionPolicy::SpeContext, 128, &head);
  EvalOptions e;
  e.max_new = TaskOptions{}.max_new;
  e.eos_token_ids = config.eos_token_ids;
  const EvalResult r = evaluate(sparse, TaskKind::Passkey, instances, &tok, e);
  ASSERT_EQ(r.trials.size(), 1u);
  EXPECT_FALSE(r.trials[0].output.empty());
  ASSERT_TRUE(sparse.overlap_rate().has_value());
  EXPECT_GE(*sparse.overlap_rate(), 0.0);
  EXPECT_LE(*sparse.overlap_rate(), 1.0);
  // The last step's sets: B per KV head, ascending, position 0 (the sink) in every one.
  const std::vector<TokenSelection>& last = sparse.last_selections(0);
  ASSERT_EQ(last.size(), 1u);
  ASSERT_EQ(last[0].kv_heads, config.shape.kv_heads);
  ASSERT_EQ(last[0].count, 128);
  for (int g = 0; g < last[0].kv_heads; ++g) {
    const auto s = last[0].head(g);
    EXPECT_EQ(s.front(), 0);
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  }
  RecordProperty("output", r.trials[0].output_text);
  RecordProperty("correct", r.trials[0].correct ? 1 : 0);
  RecordProperty("overlap_rate", std::to_string(*sparse.overlap_rate()));
}

}  // namespace
}  // namespace specontext
