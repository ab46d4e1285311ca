#pragma once
// Attention mass captured (the paper's Tables 1–2): at a sparse decode step, for every layer and
// query head, the share of that head's dense softmax attention (over every cached position) that
// falls on the set of positions the head's KV head attends under the policy. 1 for dense attention;
// a policy that keeps the heavy hitters keeps most of it. Both backends feed this meter: the CPU
// reference from its dense scores, the CUDA backend from attention_scores and kernels/list_mass.
#include <cstdint>
#include <optional>
#include <vector>

namespace specontext {

class AttentionMassMeter {
 public:
  // `mass_sum` summed over `heads` query heads of `layer` at one step of one request.
  void add(int layer, double mass_sum, std::int64_t heads);
  // The mean over every (step, request, layer, query head) so far; nullopt before any.
  std::optional<double> mean() const;
  // The same per layer (0 where a layer has no sample).
  std::vector<double> per_layer() const;
  void clear() { sum_.clear(), count_.clear(); }

 private:
  std::vector<double> sum_;
  std::vector<std::int64_t> count_;
};

}  // namespace specontext
