// Tests of engine/rope: inverse frequencies without scaling, with linear, Llama 3 and YaRN
// scaling, against values computed outside the code under test (Python, transcribing
// transformers' modeling_rope_utils by hand), and YaRN's attention factor.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/rope.hpp"
#include "sim/config_error.hpp"

using namespace specontext;

namespace {

ModelConfig rope_model(long long head_dim, double theta) {
  ModelConfig c;
  c.shape.head_dim = head_dim;
  c.shape.max_positions = 131072;
  c.rope.theta = theta;
  c.origin = "inline-rope.json";
  return c;
}

void expect_relative(double expected, float actual, const char* what, int i) {
  EXPECT_NEAR(actual, expected, 2e-6 * std::abs(expected)) << what << " index " << i;
}

}  // namespace

TEST(Rope, UnscaledFrequenciesFollowThetaPowers) {
  const ModelConfig c = rope_model(8, 10000.0);
  const std::vector<float> inv = rope_inverse_frequencies(c);
  ASSERT_EQ(inv.size(), 4u);
  // 10000^(-2i/8) = 1, 0.1, 0.01, 0.001
  const double expected[] = {1.0, 0.1, 0.01, 0.001};
  for (int i = 0; i < 4; ++i) expect_relative(expected[i], inv[i], "theta 1e4", i);
  EXPECT_FLOAT_EQ(rope_attention_factor(c), 1.0f);
}

TEST(Rope, LinearScalingDividesEveryFrequency) {
  ModelConfig c = rope_model(8, 10000.0);
  c.rope.scaling = RopeScaling::Linear;
  c.rope.factor = 4.0;
  const std::vector<float> inv = rope_inverse_frequencies(c);
  const double expected[] = {0.25, 0.025, 0.0025, 0.00025};
  for (int i = 0; i < 4; ++i) expect_relative(expected[i], inv[i], "linear", i);
  EXPECT_FLOAT_EQ(rope_attention_factor(c), 1.0f);
}

TEST(Rope, Llama31ScalingMatchesTransformers) {
  // Llama 3.1: theta 500000, factor 8, low 1, high 4, original 8192, head_dim 128.
  ModelConfig c = rope_model(128, 500000.0);
  c.rope.scaling = RopeScaling::Llama3;
  c.rope.factor = 8.0;
  c.rope.low_freq_factor = 1.0;
  c.rope.high_freq_factor = 4.0;
  c.rope.original_max_positions = 8192;
  const std::vector<float> inv = rope_inverse_frequencies(c);
  ASSERT_EQ(inv.size(), 64u);
  // High frequencies (wavelength < 2048) unchanged; low ones (> 8192) divided by 8; in between,
  // the smooth blend. Pair 29's wavelength is 2401.7, pair 34's 6695.1, pair 35's 8218.7.
  const struct {
    int i;
    double value;
  } expected[] = {{0, 1.0},
                  {20, 0.016560440080994446},
                  {29, 0.002166570763503359},
                  {30, 0.0013718935677611381},
                  {34, 0.0001785078127679964},
                  {35, 9.556212353964683e-05},
                  {63, 3.068925988914511e-07}};
  for (const auto& e : expected) expect_relative(e.value, inv[e.i], "llama3", e.i);
  // The blend written out for pair 30: smooth = (8192 / wavelen - 1) / 3.
  const double base = std::pow(500000.0, -60.0 / 128.0);
  const double smooth = (8192.0 / (2.0 * M_PI / base) - 1.0) / 3.0;
  expect_relative((1.0 - smooth) * base / 8.0 + smooth * base, inv[30], "llama3 blend", 30);
  EXPECT_FLOAT_EQ(rope_attention_factor(c), 1.0f);
}

TEST(Rope, YarnScalingMatchesTransformers) {
  // Qwen3-style YaRN: theta 1e6, factor 4, original 32768, beta_fast 32, beta_slow 1, head_dim 128.
  // Correction range: floor(23.596) = 23 to ceil(39.651) = 40.
  ModelConfig c = rope_model(128, 1000000.0);
  c.rope.scaling = RopeScaling::Yarn;
  c.rope.factor = 4.0;
  c.rope.original_max_positions = 32768;
  const std::vector<float> inv = rope_inverse_frequencies(c);
  ASSERT_EQ(inv.size(), 64u);
  const struct {
    int i;
    double value;
  } expected[] = {{0, 1.0},
                  {23, 0.006978305848598663},
                  {24, 0.005375321490790102},
                  {30, 0.001064360981247002},
                  {39, 6.490394320837029e-05},
                  {40, 4.445698525097307e-05},
                  {63, 3.102344401879299e-07}};
  for (const auto& e : expected) expect_relative(e.value, inv[e.i], "yarn", e.i);
  EXPECT_NEAR(rope_attention_factor(c), 0.1 * std::log(4.0) + 1.0, 1e-6);  // 1.1386294
}

TEST(Rope, RejectsOddHeadDimension) {
  const ModelConfig c = rope_model(7, 10000.0);
  EXPECT_THROW(rope_inverse_frequencies(c), ConfigError);
}
