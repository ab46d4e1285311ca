// kernels/embedding against its CPU reference: bit-identical rows, zero rows for bad ids.
#include <random>

#include "kernels/embedding.cuh"
#include "kernels/reference/embedding.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

TEST(Embedding, MatchesTheReference) {
  SPECONTEXT_REQUIRE_GPU();
  const std::int64_t vocab = 1000;
  for (std::int64_t hidden : {4096, 576, 100}) {
    for (std::int64_t tokens : {1, 37}) {
      const auto table = random_bf16(static_cast<std::size_t>(vocab * hidden), 1);
      std::mt19937 gen(static_cast<std::uint32_t>(tokens));
      std::uniform_int_distribution<int> pick(0, static_cast<int>(vocab) - 1);
      std::vector<std::int32_t> ids(static_cast<std::size_t>(tokens));
      for (auto& id : ids) id = pick(gen);
      if (tokens > 2) {
        ids[1] = -1;                                  // out of range: a zero row
        ids[2] = static_cast<std::int32_t>(vocab);    // out of range: a zero row
      }
      DeviceBuffer<std::uint16_t> d_table(table), d_out(static_cast<std::size_t>(tokens * hidden));
      DeviceBuffer<std::int32_t> d_ids(ids);
      kernels::launch_embedding({d_out.get(), d_table.get(), d_ids.get(), tokens, hidden, vocab}, nullptr);
      SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(d_out.download(), ref::embedding(table, vocab, hidden, ids)) << "hidden " << hidden << " tokens " << tokens;
    }
  }
}

}  // namespace

TEST(EmbeddingReference, CopiesRowsAndZeroesBadIds) {
  const std::vector<std::uint16_t> table = {1, 2, 3, 4, 5, 6};  // vocab 3, hidden 2
  const auto out = ref::embedding(table, 3, 2, {2, 0, 3, -1, 1});
  EXPECT_EQ(out, (std::vector<std::uint16_t>{5, 6, 1, 2, 0, 0, 0, 0, 3, 4}));
}

}  // namespace specontext
