// The real LLM end to end on the CPU: text through our tokenizer, SmolLM2 through the CPU
// reference, tokens back to text. A trained model knowing a plain fact is evidence no unit test of
// the parts gives (tokenizer, GGUF dequantisation, RoPE, attention and sampling all have to be right).
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/chat_template.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/tokenizer.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

const std::filesystem::path kSmolLM2 = testing::smollm2_gguf();

std::string complete(const std::string& text, bool chat, int max_new) {
  const GgufFile file(kSmolLM2);
  const ModelConfig config = gguf_engine_config(file);
  const Tokenizer tok = Tokenizer::from_gguf(file);
  const std::string prompt = chat ? render_chat_prompt(tok.chat_template(), text, kSmolLM2.string()) : text;
  CpuBackend cpu(config, gguf_weights(config, file), 1, 512);
  GenerateOptions o;
  o.max_new = max_new;
  o.eos_token_ids = config.eos_token_ids;
  return tok.decode(generate(cpu, {tok.encode(prompt)}, o).tokens[0], true);
}

TEST(SmolLM2Prompt, KnowsTheCapitalOfFrance) {
  if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "no " << kSmolLM2 << " (scripts/fetch_smollm2.sh fetches it)";
  EXPECT_NE(complete("The capital of France is", false, 4).find("Paris"), std::string::npos);
  EXPECT_NE(complete("What is the capital of France?", true, 16).find("Paris"), std::string::npos);
}

}  // namespace
}  // namespace specontext
