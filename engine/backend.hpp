#pragma once
// What the decode loop needs of a backend: requests with their own KV caches, a prefill per
// request, and one decode step for a batch of requests (each at its own length).
#include <cstdint>
#include <optional>
#include <vector>

namespace specontext {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  float top_p = 1.0f;
  std::uint64_t seed = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::int64_t vocab() const = 0;
  virtual std::int64_t max_requests() const = 0;
  virtual std::int64_t max_context() const = 0;
  // Empties request r's KV cache.
  virtual void reset(int request) = 0;
  // Appends `tokens` to request r's context; returns the logits of the last position [vocab].
  virtual std::vector<float> prefill(int request, const std::vector<int>& tokens) = 0;
  // Appends one token to each listed request; returns logits [requests.size() * vocab].
  virtual std::vector<float> decode(const std::vector<int>& requests, const std::vector<int>& tokens) = 0;
  // One decode step that returns the next token of each listed request. The default samples
  // on the host from decode()'s logits (engine/sampling.hpp); the CUDA backend samples on the
  // device. `step` makes the random stream of a seeded run reproducible.
  virtual std::vector<int> decode_sample(const std::vector<int>& requests, const std::vector<int>& tokens,
                                         const SamplingParams& sampling, std::int64_t step);
  // Tokens cached for request r.
  virtual std::int64_t length(int request) const = 0;
  // Under a sparse KV policy, the mean overlap of adjacent decode steps' selections so far
  // (engine/overlap_meter.hpp); nullopt for dense decoding or before two steps.
  virtual std::optional<double> overlap_rate() const { return std::nullopt; }
  // Under a sparse KV policy, where measured, the attention mass captured so far
  // (engine/attention_mass.hpp): its meter, or nullptr (dense decoding, or not measured).
  virtual const class AttentionMassMeter* attention_mass() const { return nullptr; }
};

}  // namespace specontext
