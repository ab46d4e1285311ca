// Tests of CpuBackend's feature capture (the residual streams entering chosen layers, an EAGLE-3
// draft's input) on a tiny random model: layer 0's input is the token embedding, columns follow the
// order the layers are given, prefill and decode steps capture the same rows, requests in one batch
// keep their own rows, and capture leaves the logits as they were. The real model's features are
// checked against Hugging Face's hidden_states in tests/test_retrieval_head_golden.cpp.
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/cpu_backend.hpp"
#include "engine/model_config.hpp"
#include "engine/weights.hpp"

namespace specontext {
namespace {

ModelConfig tiny_config() {
  return parse_engine_config({{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 32}, {"intermediate_size", 48},
                              {"num_attention_heads", 4}, {"num_hidden_layers", 4}, {"num_key_value_heads", 2},
                              {"vocab_size", 50}, {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 64}},
                             "tiny-features.json");
}

const std::vector<int> kTokens = {3, 17, 42, 8, 8, 25, 1, 49};

TEST(CpuFeatures, NothingCapturedByDefault) {
  const ModelConfig c = tiny_config();
  CpuBackend cpu(c, random_weights(c, 1), 1, 64);
  cpu.prefill(0, kTokens);
  EXPECT_TRUE(cpu.features(0).empty());
  EXPECT_EQ(cpu.feature_width(), 0);
}

TEST(CpuFeatures, LayerZeroIsTheEmbeddingAndColumnsFollowTheGivenOrder) {
  const ModelConfig c = tiny_config();
  const ModelWeights w = random_weights(c, 1);
  CpuBackend cpu(c, w, 1, 64);
  cpu.set_feature_layers({2, 0, 3});
  EXPECT_EQ(cpu.feature_width(), 96);
  cpu.prefill(0, kTokens);
  const std::vector<float> both = cpu.features(0);
  ASSERT_EQ(both.size(), kTokens.size() * 96);
  for (std::size_t t = 0; t < kTokens.size(); ++t)
    for (int i = 0; i < 32; ++i) EXPECT_EQ(both[t * 96 + 32 + i], w.embed.data[kTokens[t] * 32 + i]) << t << " " << i;

  // Layer 2's input alone is the first block of the triple.
  cpu.reset(0);
  cpu.set_feature_layers({2});
  cpu.prefill(0, kTokens);
  const std::vector<float>& two = cpu.features(0);
  for (std::size_t t = 0; t < kTokens.size(); ++t)
    for (int i = 0; i < 32; ++i) EXPECT_EQ(two[t * 32 + i], both[t * 96 + i]);
}

TEST(CpuFeatures, DecodeStepsCaptureWhatPrefillCaptures) {
  const ModelConfig c = tiny_config();
  CpuBackend cpu(c, random_weights(c, 2), 3, 64);
  cpu.set_feature_layers({1, 3});
  cpu.prefill(0, kTokens);
  const std::vector<float> whole = cpu.features(0);

  // Request 1 by prefill of 3 tokens then one decode at a time, batched beside request 2, which
  // decodes something else.
  cpu.prefill(1, std::vector<int>(kTokens.begin(), kTokens.begin() + 3));
  for (std::size_t i = 0; i < 3 * 64; ++i) ASSERT_NEAR(cpu.features(1)[i], whole[i], 1e-5f) << i;
  cpu.prefill(2, {5, 6});
  for (std::size_t t = 3; t < kTokens.size(); ++t) {
    cpu.decode({2, 1}, {7, kTokens[t]});
    ASSERT_EQ(cpu.features(1).size(), 64u);
    ASSERT_EQ(cpu.features(2).size(), 64u);
    for (int i = 0; i < 64; ++i) ASSERT_NEAR(cpu.features(1)[i], whole[t * 64 + i], 1e-5f) << t << " " << i;
  }
  // A request left out of a step keeps the features of its own last step.
  const std::vector<float> last = cpu.features(2);
  cpu.decode({1}, {4});
  EXPECT_EQ(cpu.features(2), last);
}

TEST(CpuFeatures, CaptureLeavesTheLogitsAsTheyWere) {
  const ModelConfig c = tiny_config();
  const ModelWeights w = random_weights(c, 3);
  CpuBackend plain(c, w, 1, 64), capturing(c, w, 1, 64);
  capturing.set_feature_layers({0, 1, 2, 3});
  EXPECT_EQ(plain.prefill(0, kTokens), capturing.prefill(0, kTokens));
  EXPECT_EQ(plain.decode({0}, {9}), capturing.decode({0}, {9}));
}

TEST(CpuFeatures, RejectsLayersOutsideTheModel) {
  const ModelConfig c = tiny_config();
  CpuBackend cpu(c, random_weights(c, 1), 1, 64);
  EXPECT_THROW(cpu.set_feature_layers({0, 4}), std::invalid_argument);
  EXPECT_THROW(cpu.set_feature_layers({-1}), std::invalid_argument);
  EXPECT_THROW(cpu.features(1), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
