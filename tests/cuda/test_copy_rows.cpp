// kernels/copy_rows against a host copy: fp32 -> bf16 (round to nearest even) into mapped rows of a
// wider buffer, and bf16 rows gathered through a source map; untouched rows and columns stay so.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/copy_rows.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

constexpr std::uint16_t kUntouched = 0x7e7e;

TEST(CopyRows, Fp32ToBf16IntoMappedRowsOfAWiderBuffer) {
  SPECONTEXT_REQUIRE_GPU();
  const std::int64_t rows = 3, cols = 576, src_stride = 600, dst_stride = 3 * 576, offset = 576;
  std::vector<float> src(static_cast<std::size_t>(rows * src_stride));
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  const std::vector<std::int32_t> dst_rows = {4, 0, 2};
  DeviceBuffer<float> d_src(src);
  DeviceBuffer<std::int32_t> d_map(dst_rows);
  DeviceBuffer<std::uint16_t> d_dst(std::vector<std::uint16_t>(static_cast<std::size_t>(5 * dst_stride), kUntouched));
  kernels::CopyRowsParams p;
  p.src = d_src.get();
  p.src_stride = src_stride;
  p.dst = d_dst.get() + offset;
  p.dst_stride = dst_stride;
  p.dst_rows = d_map.get();
  p.rows = rows;
  p.cols = cols;
  kernels::launch_copy_rows(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = d_dst.download();
  for (std::int64_t r = 0; r < 5; ++r)
    for (std::int64_t c = 0; c < dst_stride; ++c) {
      const std::int64_t i = std::find(dst_rows.begin(), dst_rows.end(), r) - dst_rows.begin();
      const bool written = i < rows && c >= offset && c < offset + cols;
      const std::uint16_t want = written ? ref::float_to_bf16(src[i * src_stride + c - offset]) : kUntouched;
      ASSERT_EQ(got[r * dst_stride + c], want) << "row " << r << " column " << c;
    }
}

TEST(CopyRows, Bf16GatherThroughASourceMap) {
  SPECONTEXT_REQUIRE_GPU();
  const std::int64_t cols = 1728;
  const auto table = testing::random_bf16(static_cast<std::size_t>(6 * cols), 9);
  const std::vector<std::int32_t> src_rows = {5, 1, 1, 3};
  DeviceBuffer<std::uint16_t> d_table(table), d_out(src_rows.size() * cols);
  DeviceBuffer<std::int32_t> d_map(src_rows);
  kernels::CopyRowsParams p;
  p.src = d_table.get();
  p.src_f32 = false;
  p.src_stride = cols;
  p.src_rows = d_map.get();
  p.dst = d_out.get();
  p.dst_stride = cols;
  p.rows = static_cast<std::int64_t>(src_rows.size());
  p.cols = cols;
  kernels::launch_copy_rows(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = d_out.download();
  for (std::size_t i = 0; i < src_rows.size(); ++i)
    for (std::int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[i * cols + c], table[src_rows[i] * cols + c]) << "row " << i;
}

TEST(CopyRows, RejectsAStrideShorterThanTheRow) {
  float f[4];
  std::uint16_t b[4];
  kernels::CopyRowsParams p;
  p.src = f;
  p.dst = b;
  p.rows = 1;
  p.cols = 4;
  p.src_stride = 4;
  p.dst_stride = 2;
  EXPECT_THROW(kernels::launch_copy_rows(p, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
