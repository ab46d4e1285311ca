// kernels/l2_prefetch: the launcher's checks (no GPU needed) and, on a GPU, spans of every shape
// prefetched without an error and without changing a byte (a prefetch has no output; the engine's
// end-to-end check is CudaFixtures.L2WeightPrefetchChangesNoLogit).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/l2_prefetch.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

// The checks run before any CUDA call. The pointers are never dereferenced.
TEST(L2Prefetch, RejectsBadParameters) {
  alignas(16) static unsigned char host[64];
  auto expect_rejected = [](const void* p, std::size_t bytes, const std::string& why) {
    try {
      kernels::launch_l2_prefetch(p, bytes, nullptr);
      ADD_FAILURE() << "accepted " << why;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'ptr'"), std::string::npos) << e.what();
    }
  };
  expect_rejected(nullptr, 4096, "a null pointer");
  expect_rejected(host + 8, 4096, "a pointer off 16 bytes");
  // Under 16 bytes rounds down to nothing: no launch, so no pointer to check.
  EXPECT_NO_THROW(kernels::launch_l2_prefetch(nullptr, 15, nullptr));
  EXPECT_NO_THROW(kernels::launch_l2_prefetch(host + 8, 0, nullptr));
}

TEST(L2Prefetch, SpansOfEveryShapeRunAndChangeNothing) {
  SPECONTEXT_REQUIRE_GPU();
  const std::size_t n = (std::size_t{9} << 20) + 48;  // 9 MiB + 48 bytes: chunks of 64 KB and a tail
  std::vector<std::uint16_t> host = testing::random_bf16(n / 2, 7);
  DeviceBuffer<std::uint16_t> buf(host);
  const auto* base = reinterpret_cast<const unsigned char*>(buf.get());
  // Whole, cut mid-chunk, one chunk, a tail under 16 bytes, offset starts, more chunks than threads.
  const std::size_t spans[][2] = {{0, n}, {0, 100000}, {16, 65536}, {4096, 40}, {65536 + 32, n - 65536 - 32}, {0, 16}};
  for (const auto& s : spans) {
    kernels::launch_l2_prefetch(base + s[0], s[1], nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  }
  EXPECT_EQ(buf.download(), host);
}

}  // namespace
}  // namespace specontext
