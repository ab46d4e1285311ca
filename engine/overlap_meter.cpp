#include "engine/overlap_meter.hpp"

#include <utility>

#include "engine/selection_policy.hpp"

namespace specontext {

void OverlapMeter::record(int request, std::vector<TokenSelection> now) {
  std::vector<TokenSelection>& last = last_.at(static_cast<std::size_t>(request));
  if (!last.empty() && last.size() == now.size()) {
    double sum = 0;
    for (std::size_t k = 0; k < now.size(); ++k) sum += selection_overlap(now[k], last[k]);
    sum_ += sum / static_cast<double>(now.size());
    ++samples_;
  }
  last = std::move(now);
}

std::optional<double> OverlapMeter::rate() const {
  if (samples_ == 0) return std::nullopt;
  return sum_ / static_cast<double>(samples_);
}

}  // namespace specontext
