// Offloaded layers (engine/kv_offload.cuh) against GPU-resident ones: the same policy and budget
// with the last layers' KV in pinned host memory, loaded elastically into slot buffers, must give
// the resident run's logits bit for bit (the attention reads the same K/V rows in the same order),
// whether the loads run on the copy stream (c1+c2) or synchronously (c1), per layer or in groups,
// in CUDA graphs or not; and the H2D bytes are exactly the rows the selection changed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <numeric>
#include <tuple>

#include "engine/cuda_backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/model_config.hpp"
#include "sim/config_error.hpp"
#include "tests/cuda/gpu_test.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/smollm2_pair.hpp"
#include "tests/gqa_draft.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using testing::random_tokens;

const testing::TinyModel& gqa() { return testing::tiny_llama_gqa(); }

Eagle3Draft gqa_draft() { return testing::gqa_draft(9); }

CudaBackendOptions options(SelectionPolicy policy, const Eagle3Draft* draft, int offload, bool async, int group, bool graph) {
  CudaBackendOptions o;
  o.max_requests = 2;
  o.max_context = 1024;
  o.prefill_chunk = 128;  // several chunks: offloaded layers stage their earlier positions
  o.cuda_graph = graph;
  o.policy = policy;
  o.budget = 48;
  o.draft = draft;
  o.offload_layers = offload;
  o.async_prefetch = async;
  o.prefetch_group = group;
  return o;
}

// Greedy decoding of two requests in lockstep on both backends; every step's logits must be equal.
void expect_same_logits(CudaBackend& resident, CudaBackend& offloaded, const std::vector<std::vector<int>>& prompts, int steps,
                        std::int64_t vocab, const std::string& what) {
  std::vector<int> tokens;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    const auto a = resident.prefill(static_cast<int>(r), prompts[r]);
    ASSERT_EQ(offloaded.prefill(static_cast<int>(r), prompts[r]), a) << what << " prefill " << r;
    tokens.push_back(static_cast<int>(std::max_element(a.begin(), a.end()) - a.begin()));
  }
  std::vector<int> requests(prompts.size());
  std::iota(requests.begin(), requests.end(), 0);
  for (int s = 0; s < steps; ++s) {
    const auto want = resident.decode(requests, tokens);
    ASSERT_EQ(offloaded.decode(requests, tokens), want) << what << " step " << s;
    for (std::size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = static_cast<int>(std::max_element(want.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                                                    want.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab)) -
                                   (want.begin() + static_cast<std::ptrdiff_t>(i * vocab)));
  }
}

TEST(KvOffload, OffloadedLayersGiveTheResidentLogitsBitForBit) {
  SPECONTEXT_REQUIRE_GPU();
  const Eagle3Draft draft = gqa_draft();
  const std::vector<std::vector<int>> prompts = {random_tokens(31, 300), random_tokens(32, 150)};
  for (SelectionPolicy policy : {SelectionPolicy::SpeContext, SelectionPolicy::SpeContextBatch, SelectionPolicy::Streaming}) {
    const Eagle3Draft* d = needs_retrieval_head(policy) ? &draft : nullptr;
    CudaBackend resident(gqa().config, gqa().weights, options(policy, d, 0, true, 1, true));
    for (const auto& [offload, async, group, graph] :
         std::vector<std::tuple<int, bool, int, bool>>{{1, true, 1, true}, {2, true, 1, true}, {2, false, 1, true}, {2, true, 2, false}}) {
      for (int r = 0; r < 2; ++r) resident.reset(r);
      CudaBackend offloaded(gqa().config, gqa().weights, options(policy, d, offload, async, group, graph));
      const std::string what = std::string(to_string(policy)) + " offload " + std::to_string(offload) + (async ? " async" : " sync") +
                               " group " + std::to_string(group) + (graph ? " graph" : "");
      expect_same_logits(resident, offloaded, prompts, 24, gqa().config.shape.vocab, what);
    }
  }
}

// The host KV on transparent huge pages (registered, engine/pinned_host_buffer.cuh) instead of
// cudaHostAlloc's: the same rows are read, so the same logits, with loads on either stream.
TEST(KvOffload, HugePageHostKvGivesTheResidentLogitsBitForBit) {
  SPECONTEXT_REQUIRE_GPU();
  const Eagle3Draft draft = gqa_draft();
  const std::vector<std::vector<int>> prompts = {random_tokens(33, 280), random_tokens(34, 170)};
  CudaBackend resident(gqa().config, gqa().weights, options(SelectionPolicy::SpeContext, &draft, 0, true, 1, true));
  for (const bool async : {true, false}) {
    for (int r = 0; r < 2; ++r) resident.reset(r);
    CudaBackendOptions o = options(SelectionPolicy::SpeContext, &draft, 2, async, 1, true);
    o.host_pages = HostPages::Huge;
    CudaBackend offloaded(gqa().config, gqa().weights, o);
    expect_same_logits(resident, offloaded, prompts, 24, gqa().config.shape.vocab, async ? "huge pages, async" : "huge pages, sync");
  }
}

// Streaming's set moves by one position a step: after the first step, each step loads exactly the
// position that entered the window (the previous step's entering token) per request and KV head.
TEST(KvOffload, StreamingLoadsOneRowPerHeadPerStep) {
  SPECONTEXT_REQUIRE_GPU();
  CudaBackend b(gqa().config, gqa().weights, options(SelectionPolicy::Streaming, nullptr, 2, true, 1, true));
  b.prefill(0, random_tokens(41, 200));
  b.prefill(1, random_tokens(42, 100));
  b.decode({0, 1}, {1, 2});
  const double first = b.take_h2d_bytes();
  const double row = 2.0 * 2.0 * 32 * 2;  // K and V, head_dim 32, bf16, 2 offloaded layers
  EXPECT_EQ(first, 2 * 2 * 47 * row) << "the first step loads the 47 past positions of each request and head";
  for (int s = 0; s < 5; ++s) {
    b.decode({0, 1}, {3, 4});
    EXPECT_EQ(b.take_h2d_bytes(), 2 * 2 * 1 * row) << "step " << s;
  }
}

TEST(KvOffload, OracleAndFullCannotOffload) {
  SPECONTEXT_REQUIRE_GPU();
  EXPECT_THROW(CudaBackend(gqa().config, gqa().weights, options(SelectionPolicy::Oracle, nullptr, 1, true, 1, true)), ConfigError);
  EXPECT_THROW(CudaBackend(gqa().config, gqa().weights, options(SelectionPolicy::Full, nullptr, 1, true, 1, true)), ConfigError);
}

// c3 planned for a small Mem_GPU: room for the weights (x1.3, the model's runtime factor) and some
// KV, so that the memory model moves the first layer near S = 350; the resident caches start at
// `initial_capacity` positions.
CudaBackendOptions adaptive_options(const Eagle3Draft* draft, std::int64_t initial_capacity) {
  CudaBackendOptions o = options(SelectionPolicy::SpeContext, draft, 0, true, 1, true);
  o.adaptive_placement = true;
  o.initial_capacity = initial_capacity;
  const double head = 2.0 * (128.0 * 3 * 128 + 2 * 128 + 2 * 128 * (4 + 2) * 32);
  o.placement_memory_bytes = 1.3 * (gqa().config.shape.weight_bytes() + head) + 1250.0 * 2 * 2 * (2 * 2 * 2 * 32);
  return o;
}

// c3: resident caches that start at 128 positions and grow, and a memory model (planned for a small
// Mem_GPU) that moves the last layer to host memory and then the other as the context grows; the
// logits stay the resident run's, bit for bit, through every move and growth.
TEST(KvOffload, AdaptivePlacementMovesLayersAsTheContextGrows) {
  SPECONTEXT_REQUIRE_GPU();
  const Eagle3Draft draft = gqa_draft();
  CudaBackend resident(gqa().config, gqa().weights, options(SelectionPolicy::SpeContext, &draft, 0, true, 1, true));
  CudaBackend adaptive(gqa().config, gqa().weights, adaptive_options(&draft, 128));
  ASSERT_EQ(adaptive.offloaded_layers(), 0);
  ASSERT_EQ(adaptive.cache_capacity(), 128);
  const int first = [&] {
    for (int S = 1; S < 1024; ++S)
      if (adaptive.planned_offload(S) > 0) return S;
    return 1024;
  }();
  RecordProperty("first_offload_at", first);
  ASSERT_GT(first, 210) << "the test wants the prompt resident";
  ASSERT_LT(first, 700) << "the test wants a move within its steps";
  const std::vector<std::vector<int>> prompts = {random_tokens(51, 200), random_tokens(52, 90)};
  std::vector<int> tokens;
  for (int r = 0; r < 2; ++r) {
    const auto a = resident.prefill(r, prompts[static_cast<std::size_t>(r)]);
    ASSERT_EQ(adaptive.prefill(r, prompts[static_cast<std::size_t>(r)]), a);
    tokens.push_back(static_cast<int>(std::max_element(a.begin(), a.end()) - a.begin()));
  }
  int most = 0;
  for (int s = 0; s < 760; ++s) {
    const auto want = resident.decode({0, 1}, tokens);
    ASSERT_EQ(adaptive.decode({0, 1}, tokens), want) << "step " << s << ", " << adaptive.offloaded_layers() << " layers offloaded";
    ASSERT_EQ(adaptive.offloaded_layers(), adaptive.planned_offload(adaptive.length(0))) << "step " << s;
    most = std::max(most, adaptive.offloaded_layers());
    const auto v = gqa().config.shape.vocab;
    for (int i = 0; i < 2; ++i)
      tokens[static_cast<std::size_t>(i)] = static_cast<int>(std::max_element(want.begin() + i * v, want.begin() + (i + 1) * v) - (want.begin() + i * v));
  }
  EXPECT_GE(most, 1);
  EXPECT_GE(adaptive.cache_capacity() == 0 ? 1024 : adaptive.cache_capacity(), 512) << "the resident caches grew";
}

// An adaptive run that starts deep (bench --adaptive at a sampled depth) begins with the layers the
// memory model offloads there, not with every layer resident at that depth, and decodes as the
// resident run does from there on, through the later moves and growth. The small Mem_GPU moves the
// first layer at S = 357 and the second at 408: a start at 380 has one layer on each side.
TEST(KvOffload, AdaptiveRunStartingDeepBeginsWithThePlannedLayersOffloaded) {
  SPECONTEXT_REQUIRE_GPU();
  const Eagle3Draft draft = gqa_draft();
  CudaBackend resident(gqa().config, gqa().weights, options(SelectionPolicy::SpeContext, &draft, 0, true, 1, true));
  CudaBackend adaptive(gqa().config, gqa().weights, adaptive_options(&draft, 380));
  ASSERT_EQ(adaptive.planned_offload(380), 1) << "the test wants a start with one layer on the host and one resident";
  EXPECT_EQ(adaptive.offloaded_layers(), 1) << "offloaded from the start";
  EXPECT_EQ(adaptive.cache_capacity(), 380);
  expect_same_logits(resident, adaptive, {random_tokens(53, 360), random_tokens(54, 200)}, 80, gqa().config.shape.vocab, "deep adaptive start");
  ASSERT_GT(adaptive.length(0), 408) << "the context passed the second move";
  EXPECT_EQ(adaptive.offloaded_layers(), adaptive.planned_offload(adaptive.length(0)));
}

// The memory plan of such a start counts only the resident layers' caches (no device needed): the
// Llama-3.1-8B shape, 16 requests at 32K under a 60 GB limit, fits, where every layer resident at
// 32K would need 69 GB of KV cache alone.
TEST(KvOffload, AdaptivePlanOfADeepStartCountsTheResidentLayersOnly) {
  const fs::path models = fs::path(SPECONTEXT_CONFIGS_DIR) / "models";
  const ModelConfig config = load_engine_config(models / "llama-3.1-8b.json");
  Eagle3Draft draft;
  draft.config = load_eagle3_draft_config(models / "eagle3-llama-3.1-8b.json", config);
  CudaBackendOptions o;
  o.max_requests = 16;
  o.max_context = 32768 + 21;
  o.initial_capacity = 32769;
  o.policy = SelectionPolicy::SpeContext;
  o.budget = 2048;
  o.draft = &draft;
  o.adaptive_placement = true;
  o.memory_limit_bytes = 60e9;
  const CudaMemoryPlan plan = CudaBackend::memory_plan(config, o, 141e9);
  const double all_layers = 2.0 * 2.0 * 32 * 16 * (8 * 128) * 32769.0;
  EXPECT_LT(plan.kv_cache, 0.75 * all_layers);
  EXPECT_GT(plan.kv_cache, 0.25 * all_layers);
  EXPECT_LE(plan.total(), 60e9);
  o.adaptive_placement = false;  // the fixed placement of the same point would not fit
  EXPECT_GT(CudaBackend::memory_plan(config, o, 141e9).total(), 60e9);
}

// The per-step phase times (engine/phase_timer.cuh): every phase of the SpeContext step is timed, the
// phases add up to the step, and a profiled run computes what an unprofiled one does.
TEST(KvOffload, StepPhasesAreTimedAndAddUpToTheStep) {
  SPECONTEXT_REQUIRE_GPU();
  const Eagle3Draft draft = gqa_draft();
  CudaBackendOptions o = options(SelectionPolicy::SpeContext, &draft, 1, true, 1, true);
  CudaBackend plain(gqa().config, gqa().weights, o);
  o.profile_steps = true;
  CudaBackend profiled(gqa().config, gqa().weights, o);
  const std::vector<int> prompt = random_tokens(71, 300);
  ASSERT_EQ(profiled.prefill(0, prompt), plain.prefill(0, prompt));
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < 10; ++s) ASSERT_EQ(profiled.decode({0}, {s + 1}), plain.decode({0}, {s + 1})) << "step " << s;
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const StepProfile p = profiled.take_step_profile();
  ASSERT_EQ(p.steps, 10);
  for (StepPhase phase : {StepPhase::RetrievalHead, StepPhase::Select, StepPhase::Prefetch, StepPhase::Attention, StepPhase::Mlp, StepPhase::Other})
    EXPECT_GT(p.ms[static_cast<std::size_t>(phase)], 0.0) << to_string(phase);
  EXPECT_GE(p.ms[static_cast<std::size_t>(StepPhase::PrefetchWait)], 0.0);
  EXPECT_LT(p.total_ms(), wall_ms) << "the timed phases lie within the steps (which also ran the plain backend)";
  EXPECT_EQ(profiled.take_step_profile().steps, 0) << "taken";
}

// The trained pair with 10 of SmolLM2's 30 layers offloaded, a 2K passkey prompt, B = 256.
TEST(KvOffload, SmolLM2OffloadedLayersGiveTheResidentLogits) {
  SPECONTEXT_REQUIRE_GPU();
  const std::optional<testing::SmolLM2Pair> pair = testing::load_smollm2_pair(2048);
  if (!pair) GTEST_SKIP() << "no SmolLM2 GGUF (scripts/fetch_smollm2.sh fetches it) or no held-out text";
  const ModelConfig& config = pair->config;
  const ModelWeights& weights = pair->weights;
  const Eagle3Draft& draft = pair->draft;
  CudaBackendOptions o;
  o.max_requests = 1;
  o.max_context = 2100;
  o.policy = SelectionPolicy::SpeContext;
  o.budget = 256;
  o.draft = &draft;
  CudaBackend resident(config, weights, o);
  o.offload_layers = 10;
  CudaBackend offloaded(config, weights, o);
  expect_same_logits(resident, offloaded, {pair->passkey_prompt}, 16, config.shape.vocab, "SmolLM2");
}

}  // namespace
}  // namespace specontext
