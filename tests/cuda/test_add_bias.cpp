// kernels/add_bias against its CPU reference (Qwen2's QKV bias on a padded fused buffer).
#include <random>

#include "kernels/add_bias.cuh"
#include "kernels/reference/add_bias.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

TEST(AddBias, MatchesTheReference) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t cols : {(32 + 2 * 8) * 128, (9 + 2 * 3) * 64, 7}) {
    for (std::int64_t tokens : {1, 37}) {
      const std::int64_t stride = cols + 8;
      auto x = random_bf16(static_cast<std::size_t>(tokens * stride), 11);
      const auto bias = random_bf16(static_cast<std::size_t>(cols), 12);
      DeviceBuffer<std::uint16_t> d_x(x), d_bias(bias);
      kernels::launch_add_bias({d_x.get(), d_bias.get(), tokens, cols, stride}, nullptr);
      SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
      ref::add_bias(x, tokens, cols, stride, bias);
      // One fp32 add and one rounding on both sides: identical bits (padding untouched).
      EXPECT_EQ(d_x.download(), x) << "cols " << cols << " tokens " << tokens;
    }
  }
}

}  // namespace

TEST(AddBiasReference, AddsPerColumnAndLeavesPadding) {
  auto b = [](float f) { return ref::float_to_bf16(f); };
  std::vector<std::uint16_t> x = {b(1), b(2), b(7), b(3), b(4), b(7)};  // 2 tokens, cols 2, stride 3
  ref::add_bias(x, 2, 2, 3, {b(0.5f), b(-2)});
  EXPECT_EQ(x, (std::vector<std::uint16_t>{b(1.5f), b(0), b(7), b(3.5f), b(2), b(7)}));
}

}  // namespace specontext
