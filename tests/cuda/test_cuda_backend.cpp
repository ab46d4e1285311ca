// The CUDA backend against the CPU reference (and so against Hugging Face) on the golden
// fixtures: greedy tokens equal, logits close at bf16 precision, batches and CUDA graphs
// change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "engine/cpu_backend.hpp"
#include "engine/cuda_backend.hpp"
#include "engine/generator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "tests/cuda/gpu_test.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

using testing::HfFixture;
using testing::load_hf_fixture;
using testing::normalised_mse;

class CudaFixtures : public ::testing::TestWithParam<std::string> {};

CudaBackendOptions options(int requests, bool graph) {
  CudaBackendOptions o;
  o.max_requests = requests;
  o.max_context = 2048;
  o.cuda_graph = graph;
  o.prefill_chunk = 256;  // the 1500-token prompt goes through several chunks
  return o;
}

TEST_P(CudaFixtures, GreedyTokensEqualTheCpuReference) {
  SPECONTEXT_REQUIRE_GPU();
  const HfFixture f = load_hf_fixture(GetParam());
  CpuBackend cpu(f.config, f.weights, 1, 2048);
  CudaBackend gpu(f.config, f.weights, options(1, true));
  for (std::size_t p = 0; p < f.prompts.size(); ++p) {
    GenerateOptions o;
    o.max_new = static_cast<int>(f.greedy[p].size());
    const auto want = generate(cpu, {f.prompts[p]}, o).tokens[0];
    const auto got = generate(gpu, {f.prompts[p]}, o).tokens[0];
    EXPECT_EQ(got, want) << GetParam() << " prompt " << p;
    EXPECT_EQ(got, f.greedy[p]) << GetParam() << " prompt " << p << " (transformers)";
  }
}

TEST_P(CudaFixtures, LogitsCloseToTheCpuReference) {
  SPECONTEXT_REQUIRE_GPU();
  const HfFixture f = load_hf_fixture(GetParam());
  CpuBackend cpu(f.config, f.weights, 1, 2048);
  CudaBackend gpu(f.config, f.weights, options(1, false));
  for (std::size_t p = 0; p < f.prompts.size(); ++p) {
    cpu.reset(0);
    gpu.reset(0);
    EXPECT_LT(normalised_mse(gpu.prefill(0, f.prompts[p]), cpu.prefill(0, f.prompts[p])), 1e-3) << "prefill, prompt " << p;
    const int next = f.greedy[p][0];
    EXPECT_LT(normalised_mse(gpu.decode({0}, {next}), cpu.decode({0}, {next})), 1e-3) << "decode, prompt " << p;
  }
}

TEST_P(CudaFixtures, BatchedRequestsAtDifferentLengthsAndGraphsChangeNothing) {
  SPECONTEXT_REQUIRE_GPU();
  const HfFixture f = load_hf_fixture(GetParam());
  GenerateOptions o;
  o.max_new = 12;
  // All prompts together (lengths 5, 40, 1500) with a graph, and each alone without one.
  CudaBackend batched(f.config, f.weights, options(3, true));
  const auto together = generate(batched, f.prompts, o).tokens;
  for (std::size_t p = 0; p < f.prompts.size(); ++p) {
    CudaBackend alone(f.config, f.weights, options(1, false));
    EXPECT_EQ(generate(alone, {f.prompts[p]}, o).tokens[0], together[p]) << GetParam() << " prompt " << p;
  }
}

// Programmatic dependent launch (kernels/programmatic_launch.cuh) lets each kernel of the decode chain
// be placed before the kernel before it has finished; one that read its input too early would change
// the logits. Same arithmetic either way, so the decode steps' logits must be identical, bit for bit.
// All prompts decode together (lengths 5, 40 and 1500): three tokens through the small-batch
// projections, and the 1500-token request's attention split over several chunks and merged.
TEST_P(CudaFixtures, ProgrammaticLaunchChangesNoLogit) {
  SPECONTEXT_REQUIRE_GPU();
  const HfFixture f = load_hf_fixture(GetParam());
  const int requests = static_cast<int>(f.prompts.size());
  auto run = [&](bool pdl) {  // the option is process-wide: each backend runs before the next is built
    CudaBackendOptions o = options(requests, true);
    o.programmatic_launch = pdl;
    CudaBackend gpu(f.config, f.weights, o);
    std::vector<int> ids, next;
    for (int r = 0; r < requests; ++r) {
      gpu.prefill(r, f.prompts[r]);
      ids.push_back(r);
      next.push_back(f.greedy[r][0]);
    }
    std::vector<std::vector<float>> steps;
    for (int step = 0; step < 6; ++step) {
      steps.push_back(gpu.decode(ids, next));
      const std::size_t vocab = steps.back().size() / ids.size();
      for (std::size_t r = 0; r < ids.size(); ++r) {
        const auto row = steps.back().begin() + static_cast<std::ptrdiff_t>(r * vocab);
        next[r] = static_cast<int>(std::max_element(row, row + static_cast<std::ptrdiff_t>(vocab)) - row);
      }
    }
    return steps;
  };
  const auto without = run(false);
  const auto with = run(true);  // built last: the process keeps the default (on)
  ASSERT_EQ(with.size(), without.size());
  for (std::size_t s = 0; s < with.size(); ++s) EXPECT_EQ(with[s], without[s]) << GetParam() << " decode step " << s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixtures, ::testing::ValuesIn(testing::hf_fixture_names()));

TEST(CudaBackend, RandomWeightsRunAtALlamaShapeAndRejectWhatDoesNotFit) {
  SPECONTEXT_REQUIRE_GPU();
  ModelConfig c = load_engine_config(std::filesystem::path(SPECONTEXT_CONFIGS_DIR) / "models" / "llama-3.1-8b.json");
  c.shape.layers = 2;  // the 8B layer shape, two of them
  CudaBackendOptions o = options(4, true);
  CudaBackend gpu(c, 1234, o);
  for (int r = 0; r < 4; ++r) gpu.fill_random_context(r, 100 + 300 * r, 7);
  const auto next = gpu.decode_sample({0, 1, 2, 3}, {1, 2, 3, 4}, {}, 1);
  ASSERT_EQ(next.size(), 4u);
  for (int t : next) EXPECT_TRUE(t >= 0 && t < c.shape.vocab);
  EXPECT_EQ(gpu.length(3), 1001);
  CudaBackendOptions huge = o;
  huge.max_requests = 4096;
  huge.max_context = 131072;
  EXPECT_THROW(CudaBackend(c, 1, huge), std::exception);
}

}  // namespace
}  // namespace specontext


namespace specontext {
namespace {

// The real LLM (Q4_1 GGUF dequantised to bf16 on the GPU, fp32 on the CPU): the same greedy
// continuation on both backends.
TEST(CudaBackend, SmolLM2GreedyTokensEqualTheCpuReference) {
  SPECONTEXT_REQUIRE_GPU();
  const auto path = testing::smollm2_gguf();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path << " (scripts/fetch_smollm2.sh fetches it)";
  const GgufFile file(path);
  const ModelConfig config = gguf_engine_config(file);
  const ModelWeights weights = gguf_weights(config, file);
  CpuBackend cpu(config, weights, 1, 256);
  CudaBackend gpu(config, weights, options(1, true));
  GenerateOptions o;
  o.max_new = 24;
  o.stop_at_eos = false;
  const std::vector<int> prompt = {504, 3458, 282, 4649, 314};
  EXPECT_EQ(generate(gpu, {prompt}, o).tokens[0], generate(cpu, {prompt}, o).tokens[0]);
}

}  // namespace
}  // namespace specontext
