// The CUPTI timeline on the device (engine/cupti_timeline.hpp): a few decode steps of the CUDA
// backend on the llama-gqa fixture, launched kernel by kernel, show up as kernels with durations,
// the `specontext` NVTX ranges (step, layer, attention, mlp), and a host-to-device copy of a known
// size; the per-step breakdown finds the steps and their ranges.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "engine/cuda_backend.hpp"
#include "engine/cupti_timeline.hpp"
#include "kernels/cuda_check.cuh"
#include "tests/cuda/gpu_test.hpp"
#include "tests/hf_fixture.hpp"

namespace specontext {
namespace {

TEST(CuptiTimeline, RecordsTheKernelsCopiesAndNvtxRangesOfDecodeSteps) {
  SPECONTEXT_REQUIRE_GPU();
  const testing::TinyModel& model = testing::tiny_llama_gqa();
  CuptiTimeline timeline;
  timeline.start();  // before the backend's first NVTX range: NVTX binds to CUPTI at its first call
  constexpr int kSteps = 3;
  constexpr std::size_t kKnownBytes = 3 * 4096 + 123;  // no copy of the engine's has this size
  {
    CudaBackendOptions o;
    o.max_requests = 1;
    o.max_context = 64;
    o.cuda_graph = false;  // kernel by kernel: every layer's ranges hold its launches
    o.prefill_chunk = 16;
    CudaBackend gpu(model.config, model.weights, o);
    gpu.prefill(0, testing::random_tokens(3, 8));
    std::vector<int> tokens = {1};
    for (int step = 0; step < kSteps; ++step) tokens = gpu.decode_sample({0}, tokens, {}, step);
    const std::vector<std::uint8_t> host(kKnownBytes, 7);  // pageable
    testing::DeviceBuffer<std::uint8_t> device(kKnownBytes);
    SPECONTEXT_CUDA_CHECK(cudaMemcpy(device.get(), host.data(), kKnownBytes, cudaMemcpyHostToDevice));
  }
  timeline.stop();
  const GpuTimeline& r = timeline.records();
  EXPECT_EQ(r.dropped_records, 0u);
  EXPECT_EQ(r.incomplete_records, 0u);

  ASSERT_FALSE(r.kernels.empty());
  std::size_t launched = 0;
  for (const KernelRecord& k : r.kernels) {
    EXPECT_GT(k.end_ns, k.start_ns) << k.name;
    EXPECT_FALSE(k.name.empty());
    EXPECT_GT(k.block[0], 0) << k.name;
    launched += k.launch.known;
  }
  EXPECT_EQ(launched, r.kernels.size()) << "every kernel's launch call should be recorded (RUNTIME/DRIVER activity)";

  const auto copy = std::find_if(r.memcpys.begin(), r.memcpys.end(),
                                 [&](const MemcpyRecord& c) { return c.kind == CopyKind::HostToDevice && c.bytes == kKnownBytes; });
  ASSERT_NE(copy, r.memcpys.end()) << "the " << kKnownBytes << "-byte host-to-device copy";
  EXPECT_EQ(copy->src, MemoryKind::Pageable);
  EXPECT_EQ(copy->dst, MemoryKind::Device);
  EXPECT_GT(copy->end_ns, copy->start_ns);

  const nlohmann::json trace = timeline.chrome_trace();
  std::size_t complete = 0;
  for (const auto& e : trace.at("traceEvents")) complete += e.at("ph") == "X";
  EXPECT_EQ(complete, r.kernels.size() + r.memcpys.size() + r.memsets.size() + r.ranges.size());

  if (CuptiTimeline::nvtx_routing() != NvtxRouting::Cupti)
    GTEST_SKIP() << "NVTX is not routed to CUPTI in this process (" << to_string(CuptiTimeline::nvtx_routing())
                 << "); an earlier test made the first NVTX call: run this test in a process of its own, as ctest does";
  EXPECT_EQ(r.unpaired_markers, 0u);
  std::set<std::string> names;
  for (const RangeRecord& range : r.ranges) {
    EXPECT_EQ(range.domain, "specontext");
    EXPECT_GE(range.end_ns, range.start_ns) << range.name;
    names.insert(range.name);
  }
  for (int step = 0; step < kSteps; ++step) EXPECT_TRUE(names.count("step " + std::to_string(step))) << "step " << step;
  for (std::int64_t l = 0; l < model.config.shape.layers; ++l) EXPECT_TRUE(names.count("layer " + std::to_string(l))) << "layer " << l;
  EXPECT_TRUE(names.count("attention"));
  EXPECT_TRUE(names.count("mlp"));
  EXPECT_TRUE(names.count("prefill"));

  const nlohmann::json summary = timeline.summary();
  ASSERT_EQ(summary.at("steps").size(), static_cast<std::size_t>(kSteps)) << summary.dump(2);
  for (const auto& s : summary.at("steps")) {
    EXPECT_GT(s.at("kernels").get<int>(), 0);
    EXPECT_GT(s.at("kernel_ms").get<double>(), 0.0);
    EXPECT_TRUE(s.at("kernel_ms_by_range").contains("attention")) << s.dump();
    EXPECT_TRUE(s.at("kernel_ms_by_range").contains("mlp")) << s.dump();
    // The step's inputs (ids, slots, positions, lengths) and its sampling uniform: 4 bytes each.
    EXPECT_GE(s.at("h2d_bytes").get<std::uint64_t>(), 5u * 4u) << s.dump();
  }
  EXPECT_GT(summary.at("outside_steps").at("kernels").get<int>(), 0) << "the prefill's kernels";
}

TEST(CuptiTimeline, OneTimelineRunsAtATime) {
  SPECONTEXT_REQUIRE_GPU();
  CuptiTimeline a, b;
  a.start();
  EXPECT_THROW(a.start(), std::logic_error);
  EXPECT_THROW(b.start(), std::runtime_error);
  a.stop();
  a.stop();  // idempotent
  b.start();  // the buffers are free again
  EXPECT_TRUE(b.running());
  b.stop();
  EXPECT_FALSE(b.running());
}

}  // namespace
}  // namespace specontext
