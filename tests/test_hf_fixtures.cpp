// The CPU reference against Hugging Face transformers: every stored position's logits and the
// greedy continuation of every prompt of every fixture.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "tests/hf_fixture.hpp"

namespace specontext {
namespace {

using testing::HfFixture;
using testing::load_hf_fixture;

class HfFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFixtures, CpuReferenceMatchesTransformersLogits) {
  const HfFixture f = load_hf_fixture(GetParam());
  CpuBackend cpu(f.config, f.weights, 1, 4096);
  const std::int64_t vocab = f.config.shape.vocab;
  for (std::size_t p = 0; p < f.prompts.size(); ++p) {
    cpu.reset(0);
    const std::vector<float> all = cpu.prefill_all_logits(0, f.prompts[p]);
    double worst = 0;
    for (std::size_t k = 0; k < f.positions[p].size(); ++k) {
      const auto pos = static_cast<std::size_t>(f.positions[p][k]);
      for (std::int64_t v = 0; v < vocab; ++v) {
        const double want = f.logits[p][k][static_cast<std::size_t>(v)];
        const double got = all[pos * static_cast<std::size_t>(vocab) + static_cast<std::size_t>(v)];
        // transformers' numbers are stored with 6 significant digits
        worst = std::max(worst, std::abs(got - want) / (1e-3 + 1e-5 * std::abs(want)));
      }
    }
    EXPECT_LE(worst, 1.0) << GetParam() << " prompt " << p << " (error in units of the tolerance)";
  }
}

TEST_P(HfFixtures, CpuReferenceGreedyTokensMatchTransformers) {
  const HfFixture f = load_hf_fixture(GetParam());
  CpuBackend cpu(f.config, f.weights, 1, 4096);
  for (std::size_t p = 0; p < f.prompts.size(); ++p) {
    GenerateOptions o;
    o.max_new = static_cast<int>(f.greedy[p].size());
    const GenerateResult r = generate(cpu, {f.prompts[p]}, o);
    EXPECT_EQ(r.tokens[0], f.greedy[p]) << GetParam() << " prompt " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFixtures, ::testing::ValuesIn(testing::hf_fixture_names()));

}  // namespace
}  // namespace specontext
