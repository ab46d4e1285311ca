// The persistent one-request decode kernel (kernels/persistent_decode.cuh): on the fixtures it runs
// (llama-gqa, mqa) against the CPU reference and Hugging Face's greedy tokens, at the Llama-3.1-8B
// layer shape at depth against the kernel chain, graph replay against direct launches, the models it
// refuses, and its parameter checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_backend.hpp"
#include "engine/cuda_backend.hpp"
#include "engine/generator.hpp"
#include "engine/model_config.hpp"
#include "kernels/persistent_decode.cuh"
#include "tests/cuda/gpu_test.hpp"
#include "tests/hf_fixture.hpp"

namespace specontext {
namespace {

using testing::normalised_mse;

int device_major() {
  int id = 0, major = 0;
  SPECONTEXT_CUDA_CHECK(cudaGetDevice(&id));
  SPECONTEXT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, id));
  return major;
}

#define SPECONTEXT_REQUIRE_SM90()                                  \
  SPECONTEXT_REQUIRE_GPU();                                        \
  if (device_major() < 9) GTEST_SKIP() << "the persistent kernel needs sm_90"

CudaBackendOptions one_request(std::int64_t context, bool persistent) {
  CudaBackendOptions o;
  o.max_requests = 1;
  o.max_context = context;
  o.persistent_decode = persistent;
  return o;
}

// Two 8B layers (hidden 4096, 32 / 8 heads of 128, ffn 14336, vocab 128256) with random weights and a
// random context: the persistent step's logits against the chain's, step after step (each step
// appends its own key, so a wrong cache write shows in the next step). Same roundings in both, only
// the fp32 sums run in another order. Depths: one key per attention chunk and less, and 1,999
// (chunks of unequal fill).
TEST(PersistentDecode, MatchesTheKernelChainAtTheLlama8BLayerShape) {
  SPECONTEXT_REQUIRE_SM90();
  ModelConfig c = load_engine_config(std::filesystem::path(SPECONTEXT_CONFIGS_DIR) / "models" / "llama-3.1-8b.json");
  c.shape.layers = 2;
  for (int depth : {3, 1999}) {
    CudaBackend persistent(c, 77, one_request(depth + 8, true));
    CudaBackend chain(c, 77, one_request(depth + 8, false));
    ASSERT_EQ(persistent.persistent_decode_refusal(), "");
    ASSERT_NE(chain.persistent_decode_refusal().find("off"), std::string::npos);
    persistent.fill_random_context(0, depth, 5);
    chain.fill_random_context(0, depth, 5);
    int token = 17;
    for (int step = 0; step < 4; ++step) {
      const std::vector<float> want = chain.decode({0}, {token});
      const std::vector<float> got = persistent.decode({0}, {token});
      ASSERT_EQ(got.size(), want.size());
      EXPECT_LT(normalised_mse(got, want), 1e-4) << "depth " << depth << ", step " << step;
      token = static_cast<int>(std::max_element(want.begin(), want.end()) - want.begin());
    }
    EXPECT_EQ(persistent.length(0), depth + 4);
  }
}

// The fixtures the kernel runs (Llama GQA and MQA, head_dim 32): greedy tokens equal the CPU
// reference's and transformers', each prompt's first decode step's logits close to the CPU's, through
// the CUDA graph. The prompts are 5, 40 and 1500 tokens: attention from one key per chunk to many.
TEST(PersistentDecode, FixturesMatchTheCpuReferenceAndTransformers) {
  SPECONTEXT_REQUIRE_SM90();
  for (const std::string name : {"llama-gqa", "mqa"}) {
    const testing::HfFixture f = testing::load_hf_fixture(name);
    CpuBackend cpu(f.config, f.weights, 1, 2048);
    CudaBackendOptions o = one_request(2048, true);
    o.prefill_chunk = 256;
    CudaBackend gpu(f.config, f.weights, o);
    ASSERT_EQ(gpu.persistent_decode_refusal(), "") << name;
    for (std::size_t p = 0; p < f.prompts.size(); ++p) {
      cpu.reset(0);
      gpu.reset(0);
      cpu.prefill(0, f.prompts[p]);
      gpu.prefill(0, f.prompts[p]);
      const int next = f.greedy[p][0];
      EXPECT_LT(normalised_mse(gpu.decode({0}, {next}), cpu.decode({0}, {next})), 1e-3) << name << " prompt " << p;
      cpu.reset(0);
      gpu.reset(0);
      GenerateOptions g;
      g.max_new = static_cast<int>(f.greedy[p].size());
      const auto got = generate(gpu, {f.prompts[p]}, g).tokens[0];
      EXPECT_EQ(got, generate(cpu, {f.prompts[p]}, g).tokens[0]) << name << " prompt " << p;
      EXPECT_EQ(got, f.greedy[p]) << name << " prompt " << p << " (transformers)";
    }
  }
}

// Replaying the captured step changes nothing: the same context decoded with and without the graph
// gives the same bits (the kernel's sums have a fixed order).
TEST(PersistentDecode, GraphReplayIsBitForBitTheDirectLaunch) {
  SPECONTEXT_REQUIRE_SM90();
  ModelConfig c = load_engine_config(std::filesystem::path(SPECONTEXT_CONFIGS_DIR) / "models" / "llama-3.1-8b.json");
  c.shape.layers = 1;
  auto run = [&](bool graph) {
    CudaBackendOptions o = one_request(600, true);
    o.cuda_graph = graph;
    CudaBackend b(c, 3, o);
    b.fill_random_context(0, 500, 9);
    std::vector<std::vector<float>> steps;
    for (int t : {1, 2, 3}) steps.push_back(b.decode({0}, {t}));
    return steps;
  };
  EXPECT_EQ(run(true), run(false));
}

TEST(PersistentDecode, RefusesWhatItDoesNotImplement) {
  SPECONTEXT_REQUIRE_SM90();
  const auto refusal = [](const std::string& fixture) {
    const testing::HfFixture f = testing::load_hf_fixture(fixture);
    CudaBackend b(f.config, f.weights, one_request(256, true));
    return b.persistent_decode_refusal();
  };
  EXPECT_EQ(refusal("llama-gqa"), "");
  EXPECT_EQ(refusal("mqa"), "");
  EXPECT_NE(refusal("mha").find("QKV bias"), std::string::npos);           // Qwen2
  EXPECT_NE(refusal("qwen3-qknorm").find("q/k norms"), std::string::npos);  // Qwen3
}

// Bad parameters throw before any CUDA call (this runs without a GPU too).
TEST(PersistentDecode, RejectsBadParametersNamingTheField) {
  kernels::PersistentDecodeParams p;
  const auto message = [&]() -> std::string {
    try {
      kernels::launch_persistent_decode(p, nullptr);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no throw";
  };
  EXPECT_NE(message().find("'layer_count'"), std::string::npos) << message();
  p.layer_count = 2;
  EXPECT_NE(message().find("'layers' is null"), std::string::npos) << message();
}

}  // namespace
}  // namespace specontext
