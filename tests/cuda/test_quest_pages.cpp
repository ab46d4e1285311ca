// kernels/quest_pages against the CPU reference (engine/quest_selection.hpp): the page scores of
// GQA/MQA/MHA shapes at every head_dim, kept up to date over a prefill-sized first step, single-token
// steps, a chunk and a reset slot (so stale page summaries would show), and the page-to-position
// expansion checked by hand (partial last page, the entering token appended or already inside).
#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/quest_selection.hpp"
#include "kernels/quest_pages.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

struct Shape {
  int q_heads, kv_heads, head_dim;
};

// One slot's keys as the CPU reference takes them: [positions][kv_heads * head_dim], fp32.
std::vector<float> slot_keys(const std::vector<std::uint16_t>& cache, int slot, int length, const Shape& s, int max_context) {
  std::vector<float> keys(static_cast<std::size_t>(length) * s.kv_heads * s.head_dim);
  for (int p = 0; p < length; ++p)
    for (int g = 0; g < s.kv_heads; ++g)
      for (int d = 0; d < s.head_dim; ++d)
        keys[(static_cast<std::size_t>(p) * s.kv_heads + g) * s.head_dim + d] = ref::bf16_to_float(
            cache[((static_cast<std::size_t>(slot) * s.kv_heads + g) * max_context + p) * s.head_dim + d]);
  return keys;
}

TEST(QuestPages, ScoresFollowTheCpuReferenceAsTheContextGrows) {
  SPECONTEXT_REQUIRE_GPU();
  // 1,200 positions: the row at 1,100+ has 69+ pages, so the score kernel runs several page blocks
  // and the bound kernel's warps loop; 96 x 128 query floats fill the 48 KiB of shared memory exactly.
  constexpr int kMaxContext = 1200, kSlots = 3;
  for (const Shape s : {Shape{8, 2, 128}, Shape{9, 3, 64}, Shape{4, 4, 32}, Shape{6, 1, 64}, Shape{96, 1, 128}}) {
    const int pages_all = (kMaxContext + 15) / 16;
    const std::vector<std::uint16_t> cache_host = testing::random_bf16(static_cast<std::size_t>(kSlots) * s.kv_heads * kMaxContext * s.head_dim, 7);
    DeviceBuffer<std::uint16_t> cache(cache_host);
    DeviceBuffer<std::uint16_t> bounds(static_cast<std::size_t>(kSlots) * s.kv_heads * pages_all * 2 * s.head_dim);
    DeviceBuffer<std::int32_t> summarised(std::vector<std::int32_t>(kSlots, 0));
    const std::vector<std::int32_t> slots = {2, 0};
    DeviceBuffer<std::int32_t> slots_d(slots), lengths_d(2), page_counts(2);
    const std::int64_t score_stride = pages_all + 3;
    DeviceBuffer<float> scores(2 * static_cast<std::size_t>(s.kv_heads) * score_stride);
    const int q_row = s.q_heads * s.head_dim + 8;  // a padded row, as in the fused QKV buffer
    DeviceBuffer<std::uint16_t> q(2 * static_cast<std::size_t>(q_row));

    // A prefill-sized first step, single tokens, a chunk of 33, then slot 0 reset to a short prompt.
    std::vector<std::vector<std::int32_t>> steps = {{37, 1100}};
    for (int i = 0; i < 18; ++i) steps.push_back({steps.back()[0] + 1, steps.back()[1] + 1});
    steps.push_back({steps.back()[0] + 33, steps.back()[1] + 1});
    steps.push_back({steps.back()[0] + 1, 5});
    steps.push_back({steps.back()[0] + 1, 6});
    for (std::size_t step = 0; step < steps.size(); ++step) {
      const std::vector<std::int32_t>& lengths = steps[step];
      if (step + 2 == steps.size()) SPECONTEXT_CUDA_CHECK(cudaMemset(summarised.get(), 0, 4));  // slot 0 starts over
      lengths_d.upload(lengths);
      const std::vector<std::uint16_t> q_host = testing::random_bf16(q.size(), 100 + static_cast<std::uint32_t>(step));
      q.upload(q_host);
      kernels::QuestPageScoresParams p;
      p.q = q.get();
      p.q_row_stride = q_row;
      p.k_cache = cache.get();
      p.kv_head_stride = static_cast<std::int64_t>(kMaxContext) * s.head_dim;
      p.kv_request_stride = s.kv_heads * p.kv_head_stride;
      p.slots = slots_d.get();
      p.lengths = lengths_d.get();
      p.requests = 2;
      p.q_heads = s.q_heads;
      p.kv_heads = s.kv_heads;
      p.head_dim = s.head_dim;
      p.max_context = kMaxContext;
      p.max_length = *std::max_element(lengths.begin(), lengths.end());
      p.bounds = bounds.get();
      p.bounds_head_stride = static_cast<std::int64_t>(pages_all) * 2 * s.head_dim;
      p.bounds_request_stride = s.kv_heads * p.bounds_head_stride;
      p.summarised = summarised.get();
      p.scores = scores.get();
      p.score_stride = score_stride;
      p.page_counts = page_counts.get();
      kernels::launch_quest_page_scores(p, nullptr);
      SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got = scores.download();
      const std::vector<std::int32_t> counts = page_counts.download(), done = summarised.download();
      for (int i = 0; i < 2; ++i) {
        std::ostringstream where;
        where << s.q_heads << "x" << s.kv_heads << " hd" << s.head_dim << " step " << step << " row " << i << " length " << lengths[i];
        const int pages = (lengths[i] + 15) / 16;
        EXPECT_EQ(counts[i], pages) << where.str();
        EXPECT_EQ(done[slots[i]], lengths[i] / 16) << where.str();
        const std::vector<float> keys = slot_keys(cache_host, slots[i], lengths[i], s, kMaxContext);
        std::vector<float> query(static_cast<std::size_t>(s.q_heads) * s.head_dim);
        for (std::size_t e = 0; e < query.size(); ++e) query[e] = ref::bf16_to_float(q_host[static_cast<std::size_t>(i) * q_row + e]);
        const std::vector<float> want = quest_page_scores(keys.data(), lengths[i], s.kv_heads, s.head_dim, query.data(), s.q_heads);
        for (int g = 0; g < s.kv_heads; ++g)
          for (int page = 0; page < pages; ++page) {
            const float w = want[static_cast<std::size_t>(g) * pages + page];
            const float v = got[(static_cast<std::size_t>(i) * s.kv_heads + g) * score_stride + page];
            ASSERT_NEAR(v, w, 1e-4 * (8.0 + std::fabs(w))) << where.str() << " head " << g << " page " << page;
          }
      }
    }
  }
}

TEST(QuestPages, ExpandGivesEveryPositionOfThePagesAndTheEnteringToken) {
  SPECONTEXT_REQUIRE_GPU();
  // Two requests, two KV heads, lists of up to 3 pages. Request 0 holds 50 positions (pages 0..3,
  // page 3 = {48, 49}); request 1 holds 16 (one full page, the token 15 inside it).
  constexpr int kPageStride = 3, kPositionStride = 3 * 16 + 1;
  const std::vector<std::int32_t> pages = {0, 2, -1, /* head 1 */ 1, 3, -1, /* request 1 */ 0, -1, -1, /* head 1 */ -1, -1, -1};
  const std::vector<std::int32_t> page_counts = {2, 2, 1, 0};
  const std::vector<std::int32_t> lengths = {50, 16};
  DeviceBuffer<std::int32_t> pages_d(pages), counts_d(page_counts), lengths_d(lengths);
  DeviceBuffer<std::int32_t> positions(std::vector<std::int32_t>(4 * kPositionStride, -7)), position_counts(4);
  kernels::QuestExpandParams e;
  e.pages = pages_d.get();
  e.page_head_stride = kPageStride;
  e.page_request_stride = 2 * kPageStride;
  e.page_counts = counts_d.get();
  e.lengths = lengths_d.get();
  e.requests = 2;
  e.kv_heads = 2;
  e.max_pages = kPageStride;
  e.positions = positions.get();
  e.position_head_stride = kPositionStride;
  e.position_request_stride = 2 * kPositionStride;
  e.position_counts = position_counts.get();
  kernels::launch_quest_expand_pages(e, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<std::int32_t> got = positions.download(), counts = position_counts.download();
  const auto range = [](int from, int to) {
    std::vector<std::int32_t> v;
    for (int p = from; p < to; ++p) v.push_back(p);
    return v;
  };
  std::vector<std::vector<std::int32_t>> want(4);
  want[0] = range(0, 16);  // pages 0 and 2, then 49: its page 3 was not chosen
  for (int p : range(32, 48)) want[0].push_back(p);
  want[0].push_back(49);
  want[1] = range(16, 32);  // pages 1 and 3: 49 is already in page 3
  want[1].push_back(48);
  want[1].push_back(49);
  want[2] = range(0, 16);  // page 0 holds the token 15
  want[3] = {15};          // no page: the token alone
  for (int list = 0; list < 4; ++list) {
    ASSERT_EQ(counts[list], static_cast<int>(want[list].size())) << "list " << list;
    EXPECT_EQ(std::vector<std::int32_t>(got.begin() + list * kPositionStride, got.begin() + list * kPositionStride + counts[list]), want[list])
        << "list " << list;
  }
}

TEST(QuestPages, BadParametersAreRefusedBeforeAnyLaunch) {
  kernels::QuestPageScoresParams p;
  p.requests = 1;
  EXPECT_THROW(kernels::launch_quest_page_scores(p, nullptr), std::invalid_argument);  // null pointers
  kernels::QuestExpandParams e;
  e.requests = 1;
  EXPECT_THROW(kernels::launch_quest_expand_pages(e, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
