// kernels/swiglu against its CPU reference, and the reference's HF rounding.
#include <cmath>
#include <random>

#include "kernels/reference/swiglu.hpp"
#include "kernels/swiglu.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

TEST(Swiglu, MatchesTheReference) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t ffn : {14336, 1536, 100}) {
    for (std::int64_t tokens : {1, 37}) {
      const std::int64_t in_stride = 2 * ffn;
      const auto gate_up = random_bf16(static_cast<std::size_t>(tokens * in_stride), 31, 0.0f, 2.0f);
      DeviceBuffer<std::uint16_t> d_in(gate_up), d_out(static_cast<std::size_t>(tokens * ffn));
      kernels::launch_swiglu({d_in.get(), d_out.get(), tokens, ffn, in_stride, ffn}, nullptr);
      SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
      const auto got = d_out.download();
      const auto want = ref::swiglu(gate_up, tokens, ffn, in_stride);
      EXPECT_LT(testing::normalised_mse(testing::to_float(got), testing::to_float(want)), 1e-6) << "ffn " << ffn << " tokens " << tokens;
      // expf differs by an ulp at most between host and device: nearly every value is identical.
      std::size_t differ = 0;
      for (std::size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
      EXPECT_LE(differ, got.size() / 1000 + 1) << "ffn " << ffn << " tokens " << tokens;
    }
  }
}

}  // namespace

TEST(SwigluReference, SiluAndRounding) {
  EXPECT_EQ(ref::silu(0.0f), 0.0f);
  EXPECT_NEAR(ref::silu(1.0f), 0.7310585786f, 1e-6);
  EXPECT_NEAR(ref::silu(-2.0f), -0.2384058440f, 1e-6);
  EXPECT_NEAR(ref::silu(30.0f), 30.0f, 1e-5);
  auto b = [](float v) { return ref::float_to_bf16(v); };
  // silu(1) = 0.73106 -> bf16 0.73046875; * 1.0078125 (exact bf16) = 0.73617553..., which
  // rounds to 0.734375 in bf16; the unrounded silu would give 0.73677 -> 0.73828125.
  const auto out = ref::swiglu({b(1.0f), b(1.0078125f)}, 1, 1, 2);
  EXPECT_EQ(ref::bf16_to_float(out[0]), 0.734375f);
  // Rows with a padded stride: gate, up then padding.
  const auto two = ref::swiglu({b(0.0f), b(5.0f), b(9.0f), b(2.0f), b(1.0f), b(9.0f)}, 2, 1, 3);
  EXPECT_EQ(ref::bf16_to_float(two[0]), 0.0f);
  EXPECT_EQ(ref::bf16_to_float(two[1]), ref::round_bf16(ref::round_bf16(ref::silu(2.0f)) * 1.0f));
}

}  // namespace specontext
