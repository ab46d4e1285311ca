// Quest's page selection (engine/quest_selection.hpp) by hand, its bound (a page's score is at least
// every q·k in the page), and Quest through PolicyBackend on the llama-gqa fixture: a budget covering
// the context is dense bit for bit, a small one is not, and the overlap is measured over pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "engine/cpu_backend.hpp"
#include "engine/policy_backend.hpp"
#include "engine/quest_selection.hpp"
#include "tests/hf_fixture.hpp"

namespace specontext {
namespace {

using testing::random_tokens;

// One KV head of 2 dims, three pages of 16: (1, 0) keys, (0, 1) keys, (-1, 0) keys.
std::vector<float> three_pages() {
  std::vector<float> k;
  for (int page = 0; page < 3; ++page)
    for (int p = 0; p < 16; ++p) {
      k.push_back(page == 0 ? 1.0f : page == 1 ? 0.0f : -1.0f);
      k.push_back(page == 1 ? 1.0f : 0.0f);
    }
  return k;
}

TEST(QuestSelection, PicksThePagesWithTheBestBoundByHand) {
  const std::vector<float> k = three_pages();
  const float q[2] = {1.0f, 0.5f};  // bounds: page 0 = 1, page 1 = 0.5, page 2 = -1
  QuestSelection one = quest_selection(k.data(), 48, 1, 2, q, 1, 16);
  EXPECT_EQ(one.pages.indices, (std::vector<std::int32_t>{0}));
  ASSERT_EQ(one.positions[0].size(), 16u);
  EXPECT_EQ(one.positions[0].front(), 0);
  EXPECT_EQ(one.positions[0].back(), 15);
  EXPECT_EQ(quest_selection(k.data(), 48, 1, 2, q, 1, 17).pages.indices, (std::vector<std::int32_t>{0, 1}));  // ceil(17 / 16) pages
  const float tie[2] = {0.0f, 0.0f};  // every bound 0: the lower pages
  EXPECT_EQ(quest_selection(k.data(), 48, 1, 2, tie, 1, 32).pages.indices, (std::vector<std::int32_t>{0, 1}));
  // A partial last page and a budget past the context: every position.
  EXPECT_EQ(quest_selection(k.data(), 40, 1, 2, q, 1, 1000).positions[0].size(), 40u);
  EXPECT_THROW(quest_selection(k.data(), 48, 1, 2, q, 1, 0), std::invalid_argument);
}

TEST(QuestSelection, APageScoreBoundsEveryQueryKeyProductInIt) {
  std::mt19937 gen(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const int kv_heads = 2, q_heads = 4, d = 8, group = 2;
  const std::int64_t positions = 100, pages = 7;
  std::vector<float> keys(static_cast<std::size_t>(positions * kv_heads * d)), q(static_cast<std::size_t>(q_heads * d));
  for (float& x : keys) x = n(gen);
  for (float& x : q) x = n(gen);
  const QuestSelection s = quest_selection(keys.data(), positions, kv_heads, d, q.data(), q_heads, 16);
  for (int g = 0; g < kv_heads; ++g) {
    std::vector<double> bound(pages, -1e30);
    for (std::int64_t page = 0; page < pages; ++page)
      for (int h = g * group; h < (g + 1) * group; ++h) {
        double b = 0, best_dot = -1e30;
        for (int i = 0; i < d; ++i) {
          double lo = 1e30, hi = -1e30;
          for (std::int64_t p = page * 16; p < std::min(positions, (page + 1) * 16); ++p) {
            lo = std::min(lo, static_cast<double>(keys[static_cast<std::size_t>((p * kv_heads + g) * d + i)]));
            hi = std::max(hi, static_cast<double>(keys[static_cast<std::size_t>((p * kv_heads + g) * d + i)]));
          }
          const double qi = q[static_cast<std::size_t>(h * d + i)];
          b += std::max(qi * lo, qi * hi);
        }
        for (std::int64_t p = page * 16; p < std::min(positions, (page + 1) * 16); ++p) {
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += q[static_cast<std::size_t>(h * d + i)] * keys[static_cast<std::size_t>((p * kv_heads + g) * d + i)];
          best_dot = std::max(best_dot, dot);
        }
        EXPECT_GE(b, best_dot - 1e-4) << "page " << page << " head " << h;  // the bound holds
        bound[static_cast<std::size_t>(page)] = std::max(bound[static_cast<std::size_t>(page)], b);
      }
    // With a budget of one page, the page of the largest bound (the lower one on a tie).
    const auto want = std::max_element(bound.begin(), bound.end()) - bound.begin();
    EXPECT_EQ(s.pages.head(g)[0], want) << "head " << g;
  }
}

TEST(QuestSelection, ThroughPolicyBackend) {
  const auto& tiny = testing::tiny_llama_gqa();
  CpuBackend dense(tiny.config, tiny.weights, 1, 512), a(tiny.config, tiny.weights, 1, 512), b(tiny.config, tiny.weights, 1, 512);
  PolicyBackend all(a, SelectionPolicy::Quest, 10000), few(b, SelectionPolicy::Quest, 32);
  const std::vector<int> prompt = random_tokens(61, 200), next = random_tokens(62, 6);
  dense.prefill(0, prompt);
  all.prefill(0, prompt);
  few.prefill(0, prompt);
  bool differs = false;
  for (int t : next) {
    const auto want = dense.decode({0}, {t});
    EXPECT_EQ(all.decode({0}, {t}), want);
    const auto got = few.decode({0}, {t});
    differs = differs || got != want;
  }
  EXPECT_TRUE(differs) << "2 pages of 200 positions must change the logits";
  ASSERT_EQ(few.last_selections(0).size(), static_cast<std::size_t>(tiny.config.shape.layers));
  EXPECT_EQ(few.last_selections(0)[0].count, 2);  // pages
  ASSERT_TRUE(few.overlap_rate().has_value());
  EXPECT_GE(*few.overlap_rate(), 0.0);
  EXPECT_LE(*few.overlap_rate(), 1.0);
}

}  // namespace
}  // namespace specontext
