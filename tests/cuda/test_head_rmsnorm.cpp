// kernels/head_rmsnorm against its CPU reference on a fused QKV buffer (Qwen3's q and k norms).
#include <random>

#include "kernels/head_rmsnorm.cuh"
#include "kernels/reference/head_rmsnorm.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

TEST(HeadRmsNorm, MatchesTheReferenceOnQwen3QAndK) {
  SPECONTEXT_REQUIRE_GPU();
  const std::int64_t q_heads = 32, kv_heads = 8;
  for (std::int64_t head_dim : {128, 64}) {
    for (std::int64_t tokens : {1, 37}) {
      const std::int64_t stride = (q_heads + 2 * kv_heads) * head_dim + 16;  // padded rows
      auto qkv = random_bf16(static_cast<std::size_t>(tokens * stride), 7, 0.0f, 3.0f);
      const auto q_w = random_bf16(static_cast<std::size_t>(head_dim), 8, 1.0f, 0.3f);
      const auto k_w = random_bf16(static_cast<std::size_t>(head_dim), 9, 1.0f, 0.3f);
      DeviceBuffer<std::uint16_t> d_qkv(qkv), d_qw(q_w), d_kw(k_w);
      kernels::launch_head_rmsnorm({d_qkv.get(), d_qw.get(), tokens, stride, q_heads, head_dim, 1e-6f}, nullptr);
      kernels::launch_head_rmsnorm({d_qkv.get() + q_heads * head_dim, d_kw.get(), tokens, stride, kv_heads, head_dim, 1e-6f}, nullptr);
      SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
      const auto got = d_qkv.download();
      const auto before = qkv;
      ref::head_rmsnorm(qkv, tokens, stride, 0, q_heads, head_dim, q_w, 1e-6f);
      ref::head_rmsnorm(qkv, tokens, stride, q_heads * head_dim, kv_heads, head_dim, k_w, 1e-6f);
      EXPECT_LT(testing::normalised_mse(testing::to_float(got), testing::to_float(qkv)), 1e-5) << "head_dim " << head_dim << " tokens " << tokens;
      // v and the padding stay as they were, bit for bit.
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t c = (q_heads + kv_heads) * head_dim; c < stride; ++c) ASSERT_EQ(got[t * stride + c], before[t * stride + c]);
    }
  }
}

}  // namespace

TEST(HeadRmsNormReference, NormalisesEachHeadAndNothingElse) {
  // Two tokens, row: [head 0 | head 1 | untouched], head_dim 2.
  std::vector<std::uint16_t> x;
  for (float f : {3.0f, 4.0f, -2.0f, 2.0f, 9.0f, 6.0f, 4.0f, 0.0f, 1.0f, 1.0f, 9.0f}) x.push_back(ref::float_to_bf16(f));
  x.push_back(ref::float_to_bf16(5.0f));
  const std::vector<std::uint16_t> w = {ref::float_to_bf16(1.0f), ref::float_to_bf16(2.0f)};
  ref::head_rmsnorm(x, 2, 6, 0, 2, 2, w, 0.0f);
  // head (3, 4): rms sqrt(12.5); head (-2, 2): rms 2; head (4, 0): rms sqrt(8); head (1, 1): rms 1.
  const float want[12] = {3 / 3.5355339f, 2 * 4 / 3.5355339f, -1.0f, 2.0f, 9.0f, 6.0f, 4 / 2.8284271f, 0.0f, 1.0f, 2.0f, 9.0f, 5.0f};
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(ref::bf16_to_float(x[i]), want[i], std::abs(want[i]) * 8e-3) << i;
}

}  // namespace specontext
