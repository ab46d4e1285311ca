// kernels/small_gemm against its CPU reference at the Llama-3.1-8B decode shapes, the
// reference on a hand-computed example, and the launcher's parameter checks.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/fill_random.cuh"
#include "kernels/reference/small_gemm.hpp"
#include "kernels/small_gemm.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

struct Shape {
  std::int64_t out, in;
  bool fp32_out;
  std::int64_t row_step;  // compare every row_step-th row (and the last): the LM head's reference is slow
  std::int64_t x_pad, y_pad;  // extra elements per row of X and Y
};

// Runs the kernel on random W (made on the GPU: the LM head is 1 GB) and X, and compares the
// sampled rows with the reference. Y's padding columns start as NaN and must stay so.
void check(const Shape& s, std::int64_t tokens) {
  const std::string where = std::to_string(s.out) + "x" + std::to_string(s.in) + " tokens " + std::to_string(tokens);
  const std::int64_t x_stride = s.in + s.x_pad, y_stride = s.out + s.y_pad;
  DeviceBuffer<std::uint16_t> d_w(static_cast<std::size_t>(s.out * s.in));
  kernels::launch_fill_random({d_w.get(), s.out * s.in, 1234u + static_cast<std::uint64_t>(s.out), 0.0f, 0.05f}, nullptr);

  std::mt19937 gen(static_cast<std::uint32_t>(tokens * 7919 + s.in));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::uint16_t> x(static_cast<std::size_t>(tokens * x_stride));
  for (auto& v : x) v = ref::float_to_bf16(normal(gen));
  DeviceBuffer<std::uint16_t> d_x(x);

  std::vector<std::int64_t> rows;
  for (std::int64_t r = 0; r < s.out; r += s.row_step) rows.push_back(r);
  if (rows.back() != s.out - 1) rows.push_back(s.out - 1);
  const auto n_rows = static_cast<std::int64_t>(rows.size());
  std::vector<std::uint16_t> w_rows(static_cast<std::size_t>(n_rows * s.in));
  const std::size_t row_bytes = static_cast<std::size_t>(s.in) * sizeof(std::uint16_t);
  const std::int64_t strided = (s.out - 1) / s.row_step + 1;  // rows 0, step, 2 step, ...
  SPECONTEXT_CUDA_CHECK(cudaMemcpy2D(w_rows.data(), row_bytes, d_w.get(), row_bytes * s.row_step, row_bytes, strided, cudaMemcpyDeviceToHost));
  if (strided < n_rows)
    SPECONTEXT_CUDA_CHECK(cudaMemcpy(w_rows.data() + strided * s.in, d_w.get() + (s.out - 1) * s.in, row_bytes, cudaMemcpyDeviceToHost));
  const auto want = ref::small_gemm(x, w_rows, tokens, n_rows, s.in, x_stride);

  std::vector<float> got(static_cast<std::size_t>(tokens * n_rows));
  std::int64_t padding_touched = 0;
  const auto y_size = static_cast<std::size_t>(tokens * y_stride);
  kernels::SmallGemmParams p = kernels::contiguous_small_gemm(d_x.get(), d_w.get(), tokens, s.out, s.in);
  p.x_stride = x_stride;
  p.y_stride = y_stride;
  if (s.fp32_out) {
    DeviceBuffer<float> d_y(std::vector<float>(y_size, std::numeric_limits<float>::quiet_NaN()));
    p.y_f32 = d_y.get();
    kernels::launch_small_gemm(p, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = d_y.download();
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t k = 0; k < n_rows; ++k) got[t * n_rows + k] = y[t * y_stride + rows[k]];
      for (std::int64_t o = s.out; o < y_stride; ++o) padding_touched += !std::isnan(y[t * y_stride + o]);
    }
  } else {
    const std::uint16_t nan_bf16 = 0x7fc1;
    DeviceBuffer<std::uint16_t> d_y(std::vector<std::uint16_t>(y_size, nan_bf16));
    p.y_bf16 = d_y.get();
    kernels::launch_small_gemm(p, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = d_y.download();
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t k = 0; k < n_rows; ++k) got[t * n_rows + k] = ref::bf16_to_float(y[t * y_stride + rows[k]]);
      for (std::int64_t o = s.out; o < y_stride; ++o) padding_touched += y[t * y_stride + o] != nan_bf16;
    }
  }
  // bf16 output: its rounding alone gives ~1.3e-6. fp32 output: only the summation order and the
  // tensor cores' fp32 accumulation differ from the double reference.
  EXPECT_LT(testing::normalised_mse(got, want), s.fp32_out ? 1e-7 : 1e-5) << where;
  EXPECT_EQ(padding_touched, 0) << where;
}

TEST(SmallGemm, MatchesTheReferenceAtDecodeShapes) {
  SPECONTEXT_REQUIRE_GPU();
  const Shape shapes[] = {
      {6144, 4096, false, 1, 0, 0},     // QKV
      {4096, 14336, false, 1, 0, 0},    // down
      {1000, 4096, false, 1, 24, 5},    // out not a multiple of the 16 rows per block; padded strides
      {37, 72, false, 1, 8, 3},         // in not a multiple of 32 (a partial last step), fewer steps than warps
      {128256, 4096, true, 13, 0, 0},   // LM head, fp32 logits; 13 is coprime to 16, so every lane's rows are checked
  };
  for (const auto& s : shapes)
    for (std::int64_t tokens : {1, 3, 8, 9, 16}) check(s, tokens);  // 1 and 2 n-tiles, full and partial
}

}  // namespace

TEST(SmallGemmReference, HandComputed) {
  auto b = [](float v) { return ref::float_to_bf16(v); };
  // X: 2 tokens x 4 (row stride 5, the fifth column ignored); W: 2 x 4. All values exact in bf16.
  const std::vector<std::uint16_t> x = {b(1), b(2), b(3), b(4), b(99), b(0.5f), b(-1), b(0), b(2), b(99)};
  const std::vector<std::uint16_t> w = {b(1), b(0), b(-1), b(0.5f), b(2), b(1), b(1), b(-1)};
  const auto y = ref::small_gemm(x, w, 2, 2, 4, 5);
  ASSERT_EQ(y.size(), 4u);
  EXPECT_EQ(y[0], 0.0f);   // 1 + 0 - 3 + 2
  EXPECT_EQ(y[1], 3.0f);   // 2 + 2 + 3 - 4
  EXPECT_EQ(y[2], 1.5f);   // 0.5 + 0 - 0 + 1
  EXPECT_EQ(y[3], -2.0f);  // 1 - 1 + 0 - 2
}

// The checks run before any CUDA call, so this needs no GPU. The pointers are never dereferenced.
TEST(SmallGemm, RejectsBadParameters) {
  alignas(16) static std::uint16_t host[64];
  kernels::SmallGemmParams good;
  good.x = host;
  good.w = host;
  good.y_bf16 = host;
  good.tokens = 2;
  good.out = 16;
  good.in = 16;
  good.x_stride = 16;
  good.y_stride = 16;
  auto expect_rejected = [](kernels::SmallGemmParams p, const std::string& field) {
    try {
      kernels::launch_small_gemm(p, nullptr);
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + field + "'"), std::string::npos) << e.what();
    }
  };
  auto p = good;
  p.tokens = 17;
  expect_rejected(p, "tokens");
  p = good;
  p.tokens = -1;
  expect_rejected(p, "tokens");
  p = good;
  p.out = -4;
  expect_rejected(p, "out");
  p = good;
  p.in = 12;
  expect_rejected(p, "in");
  p = good;
  p.in = 0;
  expect_rejected(p, "in");
  p = good;
  p.x_stride = 8;
  expect_rejected(p, "x_stride");
  p = good;
  p.x_stride = 20;
  expect_rejected(p, "x_stride");
  p = good;
  p.y_stride = 15;
  expect_rejected(p, "y_stride");
  p = good;
  p.x = nullptr;
  expect_rejected(p, "x");
  p = good;
  p.w = nullptr;
  expect_rejected(p, "w");
  p = good;
  p.y_bf16 = nullptr;
  expect_rejected(p, "y_bf16/y_f32");
  p = good;
  p.y_f32 = reinterpret_cast<float*>(host);
  expect_rejected(p, "y_bf16/y_f32");
  p = good;
  p.x = host + 1;
  expect_rejected(p, "x");
  p = good;
  p.w = host + 4;
  expect_rejected(p, "w");
  // Nothing to do: no launch, no error.
  p = good;
  p.tokens = 0;
  EXPECT_NO_THROW(kernels::launch_small_gemm(p, nullptr));
  p = good;
  p.out = 0;
  EXPECT_NO_THROW(kernels::launch_small_gemm(p, nullptr));
}

}  // namespace specontext
