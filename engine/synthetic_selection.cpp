#include "engine/synthetic_selection.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace specontext {

SyntheticSelectionStream make_synthetic_selection(const std::vector<std::int64_t>& first_positions, int heads, std::int64_t budget,
                                                  double overlap, int steps, std::uint64_t seed) {
  if (!(overlap >= 0.0 && overlap <= 1.0)) throw std::invalid_argument("synthetic selection: overlap must be in [0, 1], got " + std::to_string(overlap));
  if (budget < 1 || heads < 1 || steps < 0) throw std::invalid_argument("synthetic selection: budget and heads must be positive");
  for (std::int64_t t : first_positions)
    if (t < 1) throw std::invalid_argument("synthetic selection: positions must be positive");
  SyntheticSelectionStream s;
  s.rows = static_cast<int>(first_positions.size());
  s.heads = heads;
  s.steps = steps;
  s.budget = budget;
  s.overlap = overlap;
  const std::size_t stride = static_cast<std::size_t>(budget + 1), pairs = static_cast<std::size_t>(s.rows) * heads;
  s.lists.assign(static_cast<std::size_t>(steps) * pairs * stride, 0);
  s.counts.assign(static_cast<std::size_t>(steps) * pairs, 0);
  const auto keep = static_cast<std::int64_t>(std::llround(overlap * static_cast<double>(budget)));
  std::mt19937_64 rng(seed);
  std::vector<std::vector<std::int32_t>> last(pairs);
  std::unordered_set<std::int32_t> taken;
  double overlap_sum = 0;
  std::int64_t overlap_samples = 0;
  for (int step = 0; step < steps; ++step)
    for (std::size_t pair = 0; pair < pairs; ++pair) {
      const std::int64_t t = first_positions[pair / static_cast<std::size_t>(heads)] + step;
      std::vector<std::int32_t>& set = last[pair];
      std::vector<std::int32_t> next;
      if (t <= budget) {  // nothing to choose: every past position
        for (std::int64_t p = 0; p < t; ++p) next.push_back(static_cast<std::int32_t>(p));
      } else {
        taken.clear();
        if (!set.empty()) {
          // New positions avoid the whole previous set, so the overlap is exact; where too few
          // positions lie outside it (a context barely longer than B), more of it stays.
          const std::int64_t outside = t - static_cast<std::int64_t>(set.size());
          const std::int64_t kept = std::min<std::int64_t>(static_cast<std::int64_t>(set.size()), std::max(keep, budget - outside));
          std::shuffle(set.begin(), set.end(), rng);
          next.assign(set.begin(), set.begin() + kept);
          for (std::int32_t p : set) taken.insert(p);
        }
        std::uniform_int_distribution<std::int64_t> pick(0, t - 1);
        while (static_cast<std::int64_t>(next.size()) < budget) {
          const auto p = static_cast<std::int32_t>(pick(rng));
          if (taken.insert(p).second) next.push_back(p);
        }
        std::sort(next.begin(), next.end());
      }
      if (!set.empty()) {
        std::vector<std::int32_t> both;
        std::vector<std::int32_t> before = set;
        std::sort(before.begin(), before.end());
        std::set_intersection(next.begin(), next.end(), before.begin(), before.end(), std::back_inserter(both));
        overlap_sum += static_cast<double>(both.size()) / static_cast<double>(next.size());
        ++overlap_samples;
      }
      set = next;
      const std::size_t at = static_cast<std::size_t>(step) * pairs + pair;
      std::copy(next.begin(), next.end(), s.lists.data() + at * stride);
      s.lists[at * stride + next.size()] = static_cast<std::int32_t>(t);  // the entering token, always attended
      s.counts[at] = static_cast<std::int32_t>(next.size() + 1);
    }
  s.achieved_overlap = overlap_samples ? overlap_sum / static_cast<double>(overlap_samples) : 1.0;
  return s;
}

}  // namespace specontext
