// kernels/add_rmsnorm against its CPU reference: the fp32 residual exactly, the bf16 output by
// normalised MSE; and the reference by hand.
#include <cmath>
#include <random>

#include "kernels/add_rmsnorm.cuh"
#include "kernels/reference/add_rmsnorm.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

std::vector<float> random_f32(std::size_t n, std::uint32_t seed, float std) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

TEST(AddRmsNorm, MatchesTheReference) {
  SPECONTEXT_REQUIRE_GPU();
  // 16384 is the most whose weight a thread holds in registers from before its wait (8 pieces of 8
  // per thread); 20480 also loads pieces where they are used.
  for (std::int64_t hidden : {4096, 576, 16384, 20480, 100}) {
    for (std::int64_t tokens : {1, 37}) {
      for (bool with_delta : {true, false}) {
        const std::size_t n = static_cast<std::size_t>(tokens * hidden);
        auto residual = random_f32(n, 3, 2.0f);
        const auto delta = with_delta ? random_bf16(n, 4, 0.0f, 0.5f) : std::vector<std::uint16_t>{};
        const auto weight = random_bf16(static_cast<std::size_t>(hidden), 5, 1.0f, 0.2f);
        DeviceBuffer<float> d_res(residual);
        DeviceBuffer<std::uint16_t> d_weight(weight), d_out(n), d_delta(with_delta ? n : 1);
        if (with_delta) d_delta.upload(delta);
        kernels::AddRmsNormParams p;
        p.residual = d_res.get();
        p.delta = with_delta ? d_delta.get() : nullptr;
        p.weight = d_weight.get();
        p.out = d_out.get();
        p.tokens = tokens;
        p.hidden = hidden;
        p.eps = 1e-5f;
        kernels::launch_add_rmsnorm(p, nullptr);
        SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
        const auto want = ref::add_rmsnorm(residual, delta, weight, tokens, hidden, 1e-5f);
        EXPECT_EQ(d_res.download(), residual) << "hidden " << hidden << " tokens " << tokens;
        EXPECT_LT(testing::normalised_mse(testing::to_float(d_out.download()), testing::to_float(want)), 1e-5)
            << "hidden " << hidden << " tokens " << tokens << " delta " << with_delta;
      }
    }
  }
}

// The retrieval head writes two norms side by side into one [tokens, 2 * hidden] input: a row
// stride wider than the row leaves the other half untouched.
TEST(AddRmsNorm, WritesIntoAWiderRowStride) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t hidden : {576, 100}) {
    const std::int64_t tokens = 5, stride = 2 * hidden;
    const std::size_t n = static_cast<std::size_t>(tokens * hidden);
    auto residual = random_f32(n, 6, 1.0f);
    const auto weight = random_bf16(static_cast<std::size_t>(hidden), 7, 1.0f, 0.2f);
    const std::uint16_t kUntouched = 0x7e7e;
    DeviceBuffer<float> d_res(residual);
    DeviceBuffer<std::uint16_t> d_weight(weight), d_out(std::vector<std::uint16_t>(static_cast<std::size_t>(tokens * stride), kUntouched));
    kernels::AddRmsNormParams p;
    p.residual = d_res.get();
    p.weight = d_weight.get();
    p.out = d_out.get() + hidden;  // the right half
    p.tokens = tokens;
    p.hidden = hidden;
    p.out_stride = stride;
    kernels::launch_add_rmsnorm(p, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
    const auto want = ref::add_rmsnorm(residual, {}, weight, tokens, hidden, p.eps);
    const auto got = d_out.download();
    std::vector<std::uint16_t> right(n);
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t i = 0; i < hidden; ++i) {
        ASSERT_EQ(got[t * stride + i], kUntouched) << "left half of row " << t;
        right[t * hidden + i] = got[t * stride + hidden + i];
      }
    EXPECT_LT(testing::normalised_mse(testing::to_float(right), testing::to_float(want)), 1e-5) << "hidden " << hidden;
  }
}

}  // namespace

TEST(AddRmsNormReference, ByHandOnAFourVector) {
  std::vector<float> residual = {1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<std::uint16_t> delta = {ref::float_to_bf16(1.0f), ref::float_to_bf16(0.0f), ref::float_to_bf16(0.0f), ref::float_to_bf16(-1.0f)};
  const std::vector<std::uint16_t> weight = {ref::float_to_bf16(1.0f), ref::float_to_bf16(0.5f), ref::float_to_bf16(2.0f), ref::float_to_bf16(-1.0f)};
  const auto out = ref::add_rmsnorm(residual, delta, weight, 1, 4, 0.0f);
  EXPECT_EQ(residual, (std::vector<float>{2.0f, 2.0f, 3.0f, 3.0f}));
  // mean square (4 + 4 + 9 + 9) / 4 = 6.5
  const double r = 1.0 / std::sqrt(6.5);
  const double want[4] = {2 * r, 0.5 * 2 * r, 2 * 3 * r, -3 * r};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(ref::bf16_to_float(out[i]), want[i], std::abs(want[i]) * 8e-3) << i;
  // The normalised value is rounded to bf16 before the weight: 2/sqrt(6.5) = 0.78446 -> 0.78515625.
  EXPECT_EQ(ref::bf16_to_float(out[0]), 0.78515625f);
}

TEST(AddRmsNormReference, EpsAndNoDelta) {
  std::vector<float> residual = {0.0f, 0.0f};
  const std::vector<std::uint16_t> weight = {ref::float_to_bf16(1.0f), ref::float_to_bf16(1.0f)};
  const auto out = ref::add_rmsnorm(residual, {}, weight, 1, 2, 1e-6f);
  EXPECT_EQ(ref::bf16_to_float(out[0]), 0.0f);
  std::vector<float> ones = {3.0f, 3.0f, 3.0f};
  const std::vector<std::uint16_t> w3(3, ref::float_to_bf16(1.0f));
  for (auto b : ref::add_rmsnorm(ones, {}, w3, 1, 3, 0.0f)) EXPECT_EQ(ref::bf16_to_float(b), 1.0f);
  EXPECT_EQ(ones, (std::vector<float>{3.0f, 3.0f, 3.0f}));
}

}  // namespace specontext
