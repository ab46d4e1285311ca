// kernels/list_mass against its CPU reference: head-level lists (one per KV head) and batch-level
// ones (head stride 0, one count per request), lists of 0 to 300 entries, and the reference itself
// on a case small enough to add up by hand.
#include <random>
#include <vector>

#include "kernels/list_mass.cuh"
#include "kernels/reference/list_mass.hpp"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

TEST(ListMass, ReferenceAddsTheListedScoresByHand) {
  const std::vector<float> scores = {0.5f, 0.25f, 0.125f, 0.125f, /* head 1 */ 0.1f, 0.2f, 0.3f, 0.4f};
  const std::vector<std::int32_t> lists = {0, 2, 9, /* head 1 */ 3, 1, 0};
  const std::vector<std::int32_t> counts = {2, 2};
  ref::ListMassParams p{scores.data(), 4, lists.data(), 6, 3, counts.data(), 2, 1, 1, 2};
  const std::vector<double> got = ref::list_mass(p);
  EXPECT_DOUBLE_EQ(got[0], 0.625);                                        // positions 0 and 2 (9 is past the count)
  EXPECT_NEAR(got[1], 0.6, 1e-7);                                         // positions 3 and 1
}

TEST(ListMass, FollowsTheCpuReference) {
  SPECONTEXT_REQUIRE_GPU();
  constexpr int kRequests = 5, kHeads = 3, kStride = 400, kListStride = 301;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.0f, 0.01f);
  std::vector<float> scores(static_cast<std::size_t>(kRequests) * kHeads * kStride);
  for (float& x : scores) x = u(gen);
  for (bool batch : {false, true}) {
    const int list_heads = batch ? 1 : kHeads;
    std::vector<std::int32_t> lists(static_cast<std::size_t>(kRequests) * list_heads * kListStride, -1), counts(static_cast<std::size_t>(kRequests) * list_heads);
    for (std::size_t l = 0; l < counts.size(); ++l) {
      counts[l] = static_cast<std::int32_t>((l * 97) % kListStride);  // 0 .. 300
      for (int j = 0; j < counts[l]; ++j) lists[l * kListStride + j] = static_cast<std::int32_t>((j * 7 + l) % kStride);
    }
    DeviceBuffer<float> scores_d(scores), out(static_cast<std::size_t>(kRequests) * kHeads);
    DeviceBuffer<std::int32_t> lists_d(lists), counts_d(counts);
    kernels::ListMassParams k;
    k.scores = scores_d.get();
    k.score_stride = kStride;
    k.lists = lists_d.get();
    k.list_request_stride = static_cast<std::int64_t>(list_heads) * kListStride;
    k.list_head_stride = batch ? 0 : kListStride;
    k.counts = counts_d.get();
    k.count_request_stride = list_heads;
    k.count_head_stride = batch ? 0 : 1;
    k.requests = kRequests;
    k.kv_heads = kHeads;
    k.out = out.get();
    kernels::launch_list_mass(k, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
    const ref::ListMassParams r{scores.data(), kStride, lists.data(), k.list_request_stride, k.list_head_stride, counts.data(),
                                k.count_request_stride, k.count_head_stride, kRequests, kHeads};
    const std::vector<double> want = ref::list_mass(r);
    const std::vector<float> got = out.download();
    for (std::size_t e = 0; e < want.size(); ++e) EXPECT_NEAR(got[e], want[e], 1e-5) << (batch ? "batch" : "head") << " pair " << e;
  }
}

}  // namespace
}  // namespace specontext
