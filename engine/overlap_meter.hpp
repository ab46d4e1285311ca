#pragma once
// The overlap of adjacent decode steps' selections (paper Fig. 6b), as every backend that runs a
// sparse policy reports it: per request, from its second decode step on, |S_t ∩ S_{t-1}| / |S_t|
// averaged over the KV heads (and, for a policy with a set per layer, over the layers), then the mean
// over every such step of every request.
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/token_selection.hpp"

namespace specontext {

class OverlapMeter {
 public:
  explicit OverlapMeter(int max_requests) : last_(static_cast<std::size_t>(max_requests)) {}
  // Request r's selections of one step (one, or one per layer); compared with its previous step's.
  void record(int request, std::vector<TokenSelection> now);
  void reset(int request) { last_.at(static_cast<std::size_t>(request)).clear(); }
  void clear() { sum_ = 0, samples_ = 0; }
  std::optional<double> rate() const;
  std::int64_t samples() const { return samples_; }
  const std::vector<TokenSelection>& last(int request) const { return last_.at(static_cast<std::size_t>(request)); }

 private:
  std::vector<std::vector<TokenSelection>> last_;
  double sum_ = 0;
  std::int64_t samples_ = 0;
};

}  // namespace specontext
