// SmolLM2-135M-Instruct through the CPU reference against Hugging Face transformers reading the same
// GGUF (tests/fixtures/smollm2/): our tokenizer gives transformers' ids, our logits match its fp32
// logits, and greedy decoding gives its tokens. Skips when the set-up step has not fetched the GGUF.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>

#include "engine/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/tokenizer.hpp"
#include "tests/smollm2_goldens.hpp"

namespace specontext {
namespace {

using testing::compare_to_stored;
using testing::load_smollm2_goldens;
using testing::smollm2_gguf;

// fp32 against fp32 through 30 layers in a different summation order: the worst difference measured
// against the H200's references is 1.3e-4 (logits of magnitude ~20); the bound leaves 40x room.
constexpr double kMaxLogitDiff = 5e-3;

class SmolLM2Goldens : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(smollm2_gguf())) GTEST_SKIP() << "no " << smollm2_gguf() << " (scripts/fetch_smollm2.sh)";
  }
};

TEST_F(SmolLM2Goldens, TokenizerGivesTransformersIds) {
  const GgufFile file(smollm2_gguf());
  const Tokenizer tok = Tokenizer::from_gguf(file);
  for (const auto& p : load_smollm2_goldens().prompts) EXPECT_EQ(tok.encode(p.text), p.ids) << p.text.substr(0, 40);
}

TEST_F(SmolLM2Goldens, CpuLogitsAndGreedyTokensMatchTransformers) {
  const GgufFile file(smollm2_gguf());
  const ModelConfig config = gguf_engine_config(file);
  CpuBackend cpu(config, gguf_weights(config, file), 1, 2048);
  const auto goldens = load_smollm2_goldens();
  const auto vocab = static_cast<std::size_t>(config.shape.vocab);
  double worst = 0;
  for (const auto& p : goldens.prompts) {
    // The stored positions are the prompt's last ones: prefill up to them, then all logits of the rest.
    cpu.reset(0);
    const auto first = static_cast<std::size_t>(p.positions.front());
    if (first > 0) cpu.prefill(0, std::vector<int>(p.ids.begin(), p.ids.begin() + static_cast<std::ptrdiff_t>(first)));
    const std::vector<float> tail = cpu.prefill_all_logits(0, std::vector<int>(p.ids.begin() + static_cast<std::ptrdiff_t>(first), p.ids.end()));
    for (std::size_t k = 0; k < p.positions.size(); ++k) {
      const auto a = compare_to_stored(tail.data() + (static_cast<std::size_t>(p.positions[k]) - first) * vocab, vocab,
                                       p.logits[k], goldens.stride);
      worst = std::max(worst, a.max_abs_diff);
      EXPECT_LE(a.max_abs_diff, kMaxLogitDiff) << p.ids.size() << "-token prompt, position " << p.positions[k];
      EXPECT_TRUE(a.same_argmax) << p.ids.size() << "-token prompt, position " << p.positions[k];
    }
    cpu.reset(0);
    GenerateOptions o;
    o.max_new = static_cast<int>(p.greedy.size());
    o.stop_at_eos = false;
    EXPECT_EQ(generate(cpu, {p.ids}, o).tokens[0], p.greedy) << p.ids.size() << "-token prompt";
  }
  std::cout << "[ measured ] CPU max |logit - transformers| = " << worst << "\n";
}

}  // namespace
}  // namespace specontext
