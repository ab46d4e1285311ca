// The trace recorder on the CUDA backend (engine/trace_recorder.hpp, CudaBackend::decode_probed and
// its feature rows) against the same recording on the CPU reference, on the llama-gqa fixture with a
// seeded random draft: the same steps and positions; each layer's top attention at bf16 distance;
// streaming's rankings identical; Quest's and the retrieval head's (fed the GPU's residual streams)
// agreeing on most of their best positions; and the replayed recall of every policy close. Also the
// features the GPU keeps equal the CPU's at bf16 distance, and recording refuses a sparse policy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/cpu_backend.hpp"
#include "engine/cuda_backend.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/trace_recorder.hpp"
#include "sim/trace_replay.hpp"
#include "tests/cuda/gpu_test.hpp"
#include "tests/gqa_draft.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/temp_dir.hpp"
#include "traces/trace_file.hpp"

namespace specontext {
namespace {

using testing::random_tokens;

const testing::TinyModel& tiny() { return testing::tiny_llama_gqa(); }

double jaccard_of_prefix(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b, std::size_t n) {
  const std::set<std::int32_t> x(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(std::min(n, a.size())));
  const std::set<std::int32_t> y(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(std::min(n, b.size())));
  std::size_t both = 0;
  for (std::int32_t v : x) both += y.count(v);
  const std::size_t either = x.size() + y.size() - both;
  return either ? static_cast<double>(both) / static_cast<double>(either) : 1.0;
}

traces::Trace record(RecordableLlm& llm, RetrievalHeadCpu& head, const std::vector<std::vector<int>>& prompts, const std::string& path,
                     const std::string& backend) {
  TraceRecordOptions o;
  o.policies = {SelectionPolicy::SpeContext, SelectionPolicy::SpeContextBatch, SelectionPolicy::Quest, SelectionPolicy::Streaming};
  o.b_max = 48;
  o.max_new = 4;
  traces::TraceHeader h = trace_header(tiny().config, o, prompts);
  h.model = "llama-gqa";
  h.task = "test";
  h.backend = backend;
  {
    traces::TraceWriter w(path, h);
    record_traces(llm, &head, prompts, o, w);
    w.close();
  }
  return traces::read_trace(path);
}

TEST(TraceRecorderCuda, FollowsTheCpuRecording) {
  SPECONTEXT_REQUIRE_GPU();
  testing::TempDir dir;
  const std::vector<std::vector<int>> prompts = {random_tokens(41, 160), random_tokens(42, 97)};
  CpuBackend cpu(tiny().config, tiny().weights, 1, 256);
  RetrievalHeadCpu cpu_head(testing::gqa_draft(7, 3.0f), &cpu.weights().embed, 1, 256);
  Recordable<CpuBackend> cpu_llm(cpu);
  const traces::Trace want = record(cpu_llm, cpu_head, prompts, (dir.path() / "cpu.trace").string(), "cpu");

  CudaBackendOptions co;
  co.max_requests = 1;
  co.max_context = 256;
  co.cuda_graph = false;
  co.prefill_chunk = 64;  // the features cross chunk borders
  CudaBackend gpu(tiny().config, tiny().weights, co);
  RetrievalHeadCpu gpu_head(testing::gqa_draft(7, 3.0f), &tiny().weights.embed, 1, 256);
  Recordable<CudaBackend> gpu_llm(gpu);
  const traces::Trace got = record(gpu_llm, gpu_head, prompts, (dir.path() / "gpu.trace").string(), "cuda");

  // Both recordings must follow the same greedy tokens, or the comparisons below compare different
  // steps (and a failure there would say nothing about the recorder).
  const auto argmax = [](const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); };
  for (const auto& prompt : prompts) {
    cpu.reset(0);
    gpu.reset(0);
    std::vector<float> a = cpu.prefill(0, prompt), b = gpu.prefill(0, prompt);
    for (int s = 0; s < 4; ++s) {
      ASSERT_EQ(argmax(b), argmax(a)) << "greedy token " << s << " of the " << prompt.size() << "-token prompt";
      const int t = argmax(a);
      a = cpu.decode({0}, {t});
      b = gpu.decode({0}, {t});
    }
  }
  ASSERT_EQ(got.steps.size(), want.steps.size());
  double top_jaccard = 0, head_jaccard = 0, quest_jaccard = 0;
  int lists = 0, head_lists = 0, quest_lists = 0;
  for (std::size_t s = 0; s < want.steps.size(); ++s) {
    const traces::StepRecord &g = got.steps[s], &w = want.steps[s];
    ASSERT_EQ(g.request, w.request);
    ASSERT_EQ(g.position, w.position) << "step " << s;  // bookkeeping; the trajectory is checked above
    for (std::size_t a = 0; a < w.attention.size(); ++a) {
      top_jaccard += jaccard_of_prefix(g.attention[a].positions, w.attention[a].positions, 8);
      ++lists;
      // The best position's probability at bf16 distance.
      EXPECT_NEAR(g.attention[a].probabilities[0], w.attention[a].probabilities[0], 0.02 + 0.05 * w.attention[a].probabilities[0]);
    }
    EXPECT_EQ(g.rankings[3], w.rankings[3]) << "streaming, step " << s;
    for (std::size_t l = 0; l < w.rankings[0].size(); ++l, ++head_lists) head_jaccard += jaccard_of_prefix(g.rankings[0][l], w.rankings[0][l], 16);
    for (std::size_t l = 0; l < w.rankings[2].size(); ++l, ++quest_lists) quest_jaccard += jaccard_of_prefix(g.rankings[2][l], w.rankings[2][l], 32);
  }
  top_jaccard /= lists;
  head_jaccard /= head_lists;
  quest_jaccard /= quest_lists;
  std::cout << "GPU vs CPU recording: top-8 attention Jaccard " << top_jaccard << ", head top-16 " << head_jaccard << ", quest top-32 "
            << quest_jaccard << "\n";
  EXPECT_GE(top_jaccard, 0.85);
  EXPECT_GE(head_jaccard, 0.8);
  EXPECT_GE(quest_jaccard, 0.8);

  ReplayOptions ro;
  ro.budgets = {8, 32};
  const std::vector<ReplayResult> a = replay_trace(got, ro), b = replay_trace(want, ro);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].policy, b[i].policy);
    EXPECT_NEAR(a[i].recall.mean, b[i].recall.mean, 0.03) << a[i].policy << " B = " << a[i].budget;
  }
}

TEST(TraceRecorderCuda, FeaturesFollowTheCpuAndSparsePoliciesAreRefused) {
  SPECONTEXT_REQUIRE_GPU();
  const std::vector<int> prompt = random_tokens(43, 70);
  CpuBackend cpu(tiny().config, tiny().weights, 1, 128);
  CudaBackendOptions co;
  co.max_requests = 1;
  co.max_context = 128;
  co.prefill_chunk = 32;
  CudaBackend gpu(tiny().config, tiny().weights, co);
  cpu.set_feature_layers({0, 1, 1});
  gpu.set_feature_layers({0, 1, 1});
  ASSERT_EQ(gpu.feature_width(), cpu.feature_width());
  // The rows of the last call, as CpuBackend keeps them: the prompt's (across prefill chunks), then one.
  cpu.prefill(0, prompt);
  gpu.prefill(0, prompt);
  ASSERT_EQ(gpu.features(0).size(), cpu.features(0).size());
  EXPECT_LT(testing::normalised_mse(gpu.features(0), cpu.features(0)), 1e-3);
  cpu.decode({0}, {5});
  gpu.decode({0}, {5});
  ASSERT_EQ(gpu.features(0).size(), static_cast<std::size_t>(gpu.feature_width()));
  EXPECT_LT(testing::normalised_mse(gpu.features(0), cpu.features(0)), 1e-3);

  CudaBackendOptions sparse = co;
  sparse.policy = SelectionPolicy::Streaming;
  sparse.budget = 16;
  CudaBackend streaming(tiny().config, tiny().weights, sparse);
  EXPECT_THROW(streaming.set_feature_layers({0}), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
