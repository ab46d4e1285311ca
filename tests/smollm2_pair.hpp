#pragma once
// The real pair for the tests that run it end to end: SmolLM2-135M-Instruct (the set-up step's GGUF)
// with its weights, tokenizer and one 2K passkey prompt from the committed held-out text, and our
// EAGLE-3 draft of it. Tests skip (GTEST_SKIP in the caller, on a null result) when the GGUF or the
// held-out text is absent.
#include <filesystem>
#include <optional>
#include <vector>

#include "engine/eagle3_draft.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/tokenizer.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext::testing {

struct SmolLM2Pair {
  ModelConfig config;
  ModelWeights weights;
  std::vector<int> passkey_prompt;  // one passkey trial's prompt at `context` tokens
  Eagle3Draft draft;
};

inline std::optional<SmolLM2Pair> load_smollm2_pair(std::int64_t context) {
  if (!std::filesystem::exists(smollm2_gguf()) || !std::filesystem::exists(committed_heldout_dir())) return std::nullopt;
  const GgufFile file(smollm2_gguf());
  SmolLM2Pair p;
  p.config = gguf_engine_config(file);
  p.weights = gguf_weights(p.config, file);
  p.passkey_prompt = committed_passkey_instances(Tokenizer::from_gguf(file), context, 1).at(0).prompt;
  p.draft = load_eagle3_draft(smollm2_draft_dir(), p.config);
  return p;
}

}  // namespace specontext::testing
