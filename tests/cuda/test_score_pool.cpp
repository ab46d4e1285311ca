// kernels/score_pool against its CPU reference, bit for bit: rows of different lengths (past one
// tile, shorter than the radius, zero), max and mean up to the largest radius, a recent window,
// several rows per request; and the launcher's checks, which need no device.
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/reference/score_pool.hpp"
#include "kernels/score_pool.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

TEST(ScorePoolKernel, FollowsTheCpuReference) {
  SPECONTEXT_REQUIRE_GPU();
  constexpr int kRequests = 5, kHeads = 3, kStride = 1300, kMaxPositions = 1290;
  const std::vector<std::int32_t> lengths = {1290, 700, 40, 0, 257};  // 0: nothing written
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> in(static_cast<std::size_t>(kRequests) * kHeads * kStride);
  for (float& x : in) x = u(gen);
  for (int r = 0; r < kRequests * kHeads; ++r) in[static_cast<std::size_t>(r) * kStride] = std::numeric_limits<float>::infinity();
  const ScorePoolKind kinds[] = {ScorePoolKind::Max, ScorePoolKind::Mean, ScorePoolKind::None};
  for (ScorePoolKind kind : kinds)
    for (int radius : {1, 3, 64})
      for (std::int64_t recent : {0, 32}) {
        ScorePooling p;
        p.kind = kind;
        p.radius = kind == ScorePoolKind::None ? 0 : radius;
        p.recent = recent;
        const float kSentinel = -7.0f;
        DeviceBuffer<float> in_d(in), out_d(std::vector<float>(in.size(), kSentinel));
        DeviceBuffer<std::int32_t> lengths_d(lengths);
        kernels::ScorePoolParams k;
        k.in = in_d.get();
        k.out = out_d.get();
        k.score_stride = kStride;
        k.lengths = lengths_d.get();
        k.rows = kRequests * kHeads;
        k.rows_per_request = kHeads;
        k.max_positions = kMaxPositions;
        k.pooling = p;
        kernels::launch_score_pool(k, nullptr);
        SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
        const std::vector<float> got = out_d.download();
        for (int r = 0; r < kRequests * kHeads; ++r) {
          const std::int64_t n = lengths[r / kHeads];
          std::vector<float> want(static_cast<std::size_t>(kStride), kSentinel);
          ref::score_pool_row(in.data() + static_cast<std::size_t>(r) * kStride, want.data(), n, p);
          for (int j = 0; j < kStride; ++j)
            ASSERT_EQ(got[static_cast<std::size_t>(r) * kStride + j], want[j])
                << "kind " << static_cast<int>(kind) << " radius " << p.radius << " recent " << recent << " row " << r << " position " << j;
        }
      }
}

TEST(ScorePoolKernel, RejectsBadParametersBeforeAnyCudaCall) {
  float a = 0, b = 0;
  std::int32_t len = 1;
  kernels::ScorePoolParams k;
  k.in = &a;
  k.out = &b;
  k.score_stride = 1;
  k.lengths = &len;
  k.rows = 1;
  k.max_positions = 1;
  k.pooling.kind = ScorePoolKind::Max;
  k.pooling.radius = ScorePooling::kMaxRadius + 1;
  EXPECT_THROW(kernels::launch_score_pool(k, nullptr), std::invalid_argument);
  k.pooling.radius = 1;
  k.out = &a;
  EXPECT_THROW(kernels::launch_score_pool(k, nullptr), std::invalid_argument);
  k.out = &b;
  k.score_stride = 0;
  EXPECT_THROW(kernels::launch_score_pool(k, nullptr), std::invalid_argument);
  k.score_stride = 1;
  k.rows = 2;
  k.rows_per_request = 3;
  EXPECT_THROW(kernels::launch_score_pool(k, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
