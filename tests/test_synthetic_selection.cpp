// The synthetic selection stream of the benchmarks: B distinct past positions per list, ascending,
// the entering token last, and exactly the stated overlap between adjacent steps (measured the way
// OverlapMeter measures it); every position while the context is not longer than B.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>
#include <stdexcept>

#include "engine/synthetic_selection.hpp"

namespace specontext {
namespace {

TEST(SyntheticSelection, ListsHaveTheStatedOverlap) {
  const std::int64_t B = 64;
  for (double overlap : {0.0, 0.5, 0.9, 1.0}) {
    const SyntheticSelectionStream s = make_synthetic_selection({1000, 300}, 2, B, overlap, 6, 7);
    ASSERT_EQ(s.lists.size(), 6u * 2 * 2 * (B + 1));
    for (int step = 0; step < 6; ++step)
      for (int pair = 0; pair < 4; ++pair) {
        const std::size_t at = static_cast<std::size_t>(step * 4 + pair);
        const std::int32_t* l = s.lists.data() + at * (B + 1);
        const std::int64_t t = (pair < 2 ? 1000 : 300) + step;
        ASSERT_EQ(s.counts[at], B + 1);
        EXPECT_EQ(l[B], t);
        EXPECT_TRUE(std::is_sorted(l, l + B));
        EXPECT_EQ(std::set<std::int32_t>(l, l + B).size(), static_cast<std::size_t>(B));
        EXPECT_GE(l[0], 0);
        EXPECT_LT(l[B - 1], t);
        if (step == 0) continue;
        const std::int32_t* before = l - 4 * (B + 1);
        std::vector<std::int32_t> both;
        std::set_intersection(l, l + B, before, before + B, std::back_inserter(both));
        EXPECT_EQ(static_cast<double>(both.size()), std::round(overlap * B)) << "overlap " << overlap << " step " << step;
      }
    EXPECT_NEAR(s.achieved_overlap, std::round(overlap * B) / B, 1e-12);
  }
}

TEST(SyntheticSelection, ShortContextsListEveryPosition) {
  const SyntheticSelectionStream s = make_synthetic_selection({5}, 1, 8, 0.5, 5, 1);
  for (int step = 0; step < 5; ++step) {
    const std::int64_t t = 5 + step;
    ASSERT_EQ(s.counts[static_cast<std::size_t>(step)], std::min<std::int64_t>(t, 8) + 1) << "step " << step;
  }
  EXPECT_THROW(make_synthetic_selection({5}, 1, 8, 1.5, 5, 1), std::invalid_argument);
  EXPECT_THROW(make_synthetic_selection({0}, 1, 8, 0.5, 5, 1), std::invalid_argument);
}

}  // namespace
}  // namespace specontext
