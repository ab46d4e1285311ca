// engine/pinned_host_buffer: both kinds of pinned, mapped host memory are read correctly by a GPU
// kernel (kernels/copy_rows gathering random rows through buffer.device(), as the elastic gather
// reads KV rows), including rows that straddle 2 MiB boundaries; the THP report stays within the
// buffer; moves hand the memory over; bad kinds are named.
#include <cstdint>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "engine/pinned_host_buffer.cuh"
#include "kernels/copy_rows.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

TEST(PinnedHostBuffer, ParsesItsKinds) {
  EXPECT_EQ(parse_host_pages("cuda", "--host-pages"), HostPages::Cuda);
  EXPECT_EQ(parse_host_pages("huge", "--host-pages"), HostPages::Huge);
  try {
    parse_host_pages("thp", "--host-pages");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "--host-pages: expected 'cuda' or 'huge', got 'thp'");
  }
}

class PinnedHostBufferKinds : public ::testing::TestWithParam<HostPages> {};

TEST_P(PinnedHostBufferKinds, AKernelReadsWhatTheHostWrote) {
  SPECONTEXT_REQUIRE_GPU();
  // 5 MiB + 3 rows of 776 B: rows cross the 2 MiB boundaries at odd offsets.
  constexpr std::int64_t kCols = 388, kRows = (std::int64_t{5} << 20) / (kCols * 2) + 3, kPicked = 4000;
  PinnedHostBuffer buffer(static_cast<std::size_t>(kRows * kCols * 2), GetParam());
  ASSERT_NE(buffer.host(), nullptr);
  ASSERT_NE(buffer.device(), nullptr);
  EXPECT_EQ(buffer.pages(), GetParam());
  auto* host = static_cast<std::uint16_t*>(buffer.host());
  std::mt19937 rng(7);
  for (std::int64_t i = 0; i < kRows * kCols; ++i) host[i] = static_cast<std::uint16_t>(rng() & 0x7f7f);  // finite bf16
  std::vector<std::int32_t> rows(kPicked);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(kRows - 1));
  for (auto& r : rows) r = pick(rng);
  rows.front() = 0, rows.back() = static_cast<std::int32_t>(kRows - 1);  // both ends of the buffer
  DeviceBuffer<std::int32_t> d_rows(rows);
  DeviceBuffer<std::uint16_t> out(static_cast<std::size_t>(kPicked * kCols));

  kernels::CopyRowsParams p;
  p.src = buffer.device();
  p.src_f32 = false;
  p.src_stride = kCols;
  p.src_rows = d_rows.get();
  p.dst = out.get();
  p.dst_stride = kCols;
  p.rows = kPicked;
  p.cols = kCols;
  kernels::launch_copy_rows(p, nullptr);
  const std::vector<std::uint16_t> got = out.download();
  for (std::int64_t i = 0; i < kPicked; ++i)
    for (std::int64_t c = 0; c < kCols; ++c)
      ASSERT_EQ(got[static_cast<std::size_t>(i * kCols + c)], host[rows[static_cast<std::size_t>(i)] * kCols + c]) << "row " << i << " col " << c;

  EXPECT_LE(buffer.huge_page_bytes(), buffer.bytes());
  if (GetParam() == HostPages::Cuda) {
    EXPECT_EQ(buffer.huge_page_bytes(), 0u);
  }

  PinnedHostBuffer moved = std::move(buffer);
  EXPECT_EQ(moved.host(), host);
  EXPECT_EQ(buffer.host(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  EXPECT_EQ(buffer.bytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, PinnedHostBufferKinds, ::testing::Values(HostPages::Cuda, HostPages::Huge),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace specontext
