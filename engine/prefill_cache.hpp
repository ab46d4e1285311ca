#pragma once
// Prefilled requests of the CPU reference kept on disk, so that a sweep of policies and budgets over
// the same task instances (each its own `specontext eval` run) prefills each prompt once: prefill is
// dense under every policy (engine/policy_backend.hpp), and on the CPU it is most of a long-context
// run's time (a 4K multikey run of 10 trials: 441 s of prefill, 21 s of decode on 2 cores).
//
// An entry is one request's state after CpuBackend::prefill of a whole prompt into an empty request:
// every layer's K and V, the feature rows of the layers the backend captured (engine/retrieval_head.hpp
// reads them) and the last position's logits. Its file, DIR/<model key>-<tokens hash>.prefill, holds
// the prompt too, so a hash collision is a miss, not a wrong answer. The model key is the caller's
// fingerprint of the weights and config (content_fingerprint of their files); the engine's code is not
// in it, so a folder made before a change to the CPU forward is stale: delete it then.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace specontext {

struct PrefilledRequest {
  // n: the prompt's length (the entry stores the prompt itself)
  std::vector<std::vector<float>> k, v;    // per layer, [n, kv_heads * head_dim]
  std::vector<int> feature_layers;         // the layers whose features were captured (may be none)
  std::vector<float> features;             // [n, feature_layers.size() * hidden], or empty
  std::vector<float> logits;               // [vocab], of the last position
};

class PrefillCache {
 public:
  // Creates `dir` when missing; std::runtime_error naming it when it cannot.
  PrefillCache(std::filesystem::path dir, std::uint64_t model_key);

  // The entry for exactly `tokens` whose features serve `feature_layers`: the same layers, or any
  // entry when none are wanted (its features are then dropped). nullopt when there is none. A file
  // that is there but is not a whole entry of this format: std::runtime_error naming the file.
  std::optional<PrefilledRequest> load(const std::vector<int>& tokens, const std::vector<int>& feature_layers);
  // Writes (or replaces) the entry of `tokens`, through a temporary file of this writer renamed
  // into place (processes sharing the folder see whole entries only); std::runtime_error naming the
  // file when it cannot (the temporary file removed).
  void store(const std::vector<int>& tokens, const PrefilledRequest& entry);

  const std::filesystem::path& dir() const { return dir_; }
  std::int64_t hits() const { return hits_; }
  std::int64_t misses() const { return misses_; }

 private:
  std::filesystem::path path_for(const std::vector<int>& tokens) const;

  std::filesystem::path dir_;
  std::uint64_t model_key_;
  std::int64_t hits_ = 0, misses_ = 0;
};

// A 64-bit FNV-1a fingerprint of the files' names and bytes, in the order given; std::runtime_error
// naming a file that cannot be read.
std::uint64_t content_fingerprint(const std::vector<std::filesystem::path>& files);

}  // namespace specontext
