// SmolLM2-135M-Instruct through the CUDA backend (bf16 weights, fp32 accumulation) against Hugging
// Face transformers' fp32 references from the same GGUF (tests/fixtures/smollm2/): logits within
// bf16's reach, the same argmax wherever transformers' top-2 margin is larger than that reach, and
// the same greedy tokens up to the first step whose margin is not.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>

#include "engine/cuda_backend.hpp"
#include "engine/generator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "tests/cuda/gpu_test.hpp"
#include "tests/smollm2_goldens.hpp"

namespace specontext {
namespace {

using testing::compare_to_stored;
using testing::load_smollm2_goldens;
using testing::smollm2_gguf;

// bf16 rounding of the dequantised weights and of the activations between kernels moves SmolLM2's
// logits (magnitude ~20): the worst difference measured on the H200 over all stored logits is 0.46,
// so the bound is 1.0. Greedy steps are compared while transformers' top-2 margin exceeds 0.5 (on
// the H200 all 16 tokens of every prompt matched, including the steps past that point).
constexpr double kMaxLogitDiff = 1.0;
constexpr double kSafeMargin = 0.5;

TEST(SmolLM2GoldensCuda, LogitsAndGreedyTokensMatchTransformers) {
  SPECONTEXT_REQUIRE_GPU();
  if (!std::filesystem::exists(smollm2_gguf())) GTEST_SKIP() << "no " << smollm2_gguf();
  const GgufFile file(smollm2_gguf());
  const ModelConfig config = gguf_engine_config(file);
  CudaBackendOptions o;
  o.max_context = 2048;
  CudaBackend gpu(config, gguf_weights(config, file), o);
  const auto goldens = load_smollm2_goldens();
  const auto vocab = static_cast<std::size_t>(config.shape.vocab);
  double worst = 0;
  for (const auto& p : goldens.prompts) {
    // The last stored position is the prompt's last: prefill's logits.
    gpu.reset(0);
    const std::vector<float> last = gpu.prefill(0, p.ids);
    const auto a = compare_to_stored(last.data(), vocab, p.logits.back(), goldens.stride);
    worst = std::max(worst, a.max_abs_diff);
    EXPECT_LE(a.max_abs_diff, kMaxLogitDiff) << p.ids.size() << "-token prompt";
    const double margin = p.logits.back().top_logits[0] - p.logits.back().top_logits[1];
    if (margin > kSafeMargin) {
      EXPECT_TRUE(a.same_argmax) << p.ids.size() << "-token prompt";
    }

    std::size_t safe = 0;  // greedy steps before the first one bf16 may flip
    while (safe < p.greedy.size() && p.greedy_margins[safe] > kSafeMargin) ++safe;
    gpu.reset(0);
    GenerateOptions g;
    g.max_new = static_cast<int>(p.greedy.size());
    g.stop_at_eos = false;
    const auto got = generate(gpu, {p.ids}, g).tokens[0];
    EXPECT_EQ(std::vector<int>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(safe)),
              std::vector<int>(p.greedy.begin(), p.greedy.begin() + static_cast<std::ptrdiff_t>(safe)))
        << p.ids.size() << "-token prompt, first " << safe << " greedy tokens";
    std::cout << "[ measured ] " << p.ids.size() << "-token prompt: greedy compared over " << safe << " of "
              << p.greedy.size() << " steps, " << (got == p.greedy ? "all" : "not all") << " equal\n";
  }
  std::cout << "[ measured ] CUDA max |logit - transformers| = " << worst << "\n";
}

}  // namespace
}  // namespace specontext
