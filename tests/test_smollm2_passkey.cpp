// The real LLM on a long-context task, end to end on the CPU: held-out prose from models/heldout/
// through SmolLM2's tokenizer, the pass key at depths 0 and 1 of a 512-token context, SmolLM2 on
// the CPU reference, greedy answers read by the first-number rule. Evidence that the task is one the
// model can do with dense attention, before sparse policies are measured against it.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/cpu_backend.hpp"
#include "engine/evaluator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

const std::filesystem::path kSmolLM2 = testing::smollm2_gguf();

TEST(SmolLM2Passkey, FindsThePassKeyAtContext512) {
  if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "no " << kSmolLM2 << " (scripts/fetch_smollm2.sh fetches it)";
  if (!std::filesystem::exists(testing::committed_heldout_dir())) GTEST_SKIP() << "no " << testing::committed_heldout_dir();
  const GgufFile file(kSmolLM2);
  const ModelConfig config = gguf_engine_config(file);
  const Tokenizer tok = Tokenizer::from_gguf(file);
  const std::vector<TaskInstance> instances = testing::committed_passkey_instances(tok, 512, 2);

  CpuBackend cpu(config, gguf_weights(config, file), 2, 512);
  EvalOptions e;
  e.max_new = TaskOptions{}.max_new;
  e.eos_token_ids = config.eos_token_ids;
  const EvalResult r = evaluate(cpu, TaskKind::Passkey, instances, &tok, e);
  for (std::size_t i = 0; i < r.trials.size(); ++i)
    EXPECT_TRUE(r.trials[i].correct) << "depth " << instances[i].needles[0].depth << ": expected " << instances[i].answer << ", got \""
                                     << r.trials[i].output_text << "\"";
}

}  // namespace
}  // namespace specontext
