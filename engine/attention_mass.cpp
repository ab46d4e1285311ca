#include "engine/attention_mass.hpp"

#include <numeric>
#include <stdexcept>
#include <string>

namespace specontext {

void AttentionMassMeter::add(int layer, double mass_sum, std::int64_t heads) {
  if (layer < 0 || heads < 0) throw std::invalid_argument("AttentionMassMeter::add: layer " + std::to_string(layer) + ", heads " + std::to_string(heads));
  if (static_cast<std::size_t>(layer) >= sum_.size()) sum_.resize(static_cast<std::size_t>(layer) + 1, 0.0), count_.resize(sum_.size(), 0);
  sum_[static_cast<std::size_t>(layer)] += mass_sum;
  count_[static_cast<std::size_t>(layer)] += heads;
}

std::optional<double> AttentionMassMeter::mean() const {
  const std::int64_t n = std::accumulate(count_.begin(), count_.end(), std::int64_t{0});
  if (n == 0) return std::nullopt;
  return std::accumulate(sum_.begin(), sum_.end(), 0.0) / static_cast<double>(n);
}

std::vector<double> AttentionMassMeter::per_layer() const {
  std::vector<double> out(sum_.size(), 0.0);
  for (std::size_t l = 0; l < out.size(); ++l)
    if (count_[l] > 0) out[l] = sum_[l] / static_cast<double>(count_[l]);
  return out;
}

}  // namespace specontext
