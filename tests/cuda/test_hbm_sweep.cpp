// kernels/hbm_sweep against its CPU reference: the checksum proves every word was read once.
#include <random>
#include <stdexcept>

#include "kernels/hbm_sweep.cuh"
#include "kernels/reference/hbm_sweep.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

std::vector<std::uint64_t> random_words(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<std::uint64_t> v(n);
  for (auto& w : v) w = gen();
  return v;
}

// Odd counts (the last word outside the 16-byte loads), counts below one load per thread, and
// one (3M + 1 words) past the grid's kUnroll loads per thread, so every path of the loop runs.
TEST(HbmSweep, ChecksumIsTheXorOfEveryWord) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{1001}, std::size_t{3'000'001}}) {
    const auto words = random_words(n, 7 + n);
    DeviceBuffer<std::uint64_t> d_words(words);
    DeviceBuffer<unsigned long long> d_sum(std::vector<unsigned long long>{0});
    kernels::launch_hbm_read_sweep({d_words.get(), static_cast<std::int64_t>(n), d_sum.get()}, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(d_sum.download()[0], ref::xor_of_words(words)) << n << " words";
  }
}

// Reads 512 MiB, well past any L2: each sweep at a rate above zero and below 20 TB/s (past every
// HBM made).
TEST(HbmSweep, TimesPlausibleReads) {
  SPECONTEXT_REQUIRE_GPU();
  const std::size_t bytes = std::size_t{512} << 20;
  const std::vector<double> ms = kernels::hbm_read_sweep_ms(bytes, 3);
  ASSERT_EQ(ms.size(), 3u);
  for (double t : ms) {
    EXPECT_GT(t, 0.0);
    EXPECT_LT(static_cast<double>(bytes) / (t * 1e-3), 20e12);
  }
}

}  // namespace

TEST(HbmSweep, RejectsBadParameters) {  // checked before any device is touched
  unsigned long long sum = 0;
  const auto* misaligned = reinterpret_cast<const std::uint64_t*>(std::uintptr_t{0x1008});
  EXPECT_THROW(kernels::launch_hbm_read_sweep({misaligned, 4, &sum}, nullptr), std::invalid_argument);
  EXPECT_THROW(kernels::launch_hbm_read_sweep({nullptr, 4, &sum}, nullptr), std::invalid_argument);
  EXPECT_THROW(kernels::launch_hbm_read_sweep({misaligned, -1, &sum}, nullptr), std::invalid_argument);
  EXPECT_THROW(kernels::hbm_read_sweep_ms(8, 3), std::invalid_argument);
  EXPECT_THROW(kernels::hbm_read_sweep_ms((1 << 20) + 4, 3), std::invalid_argument);
  EXPECT_THROW(kernels::hbm_read_sweep_ms(1 << 20, 0), std::invalid_argument);
}

TEST(HbmSweepReference, XorOfWords) {
  EXPECT_EQ(ref::xor_of_words({}), 0u);
  EXPECT_EQ(ref::xor_of_words({0xF0F0u, 0x0FF0u, 0x1u}), 0xFF01u);
}

}  // namespace specontext
