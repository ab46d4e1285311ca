// Host sampling: greedy here, temperature/top-p through the CUDA sampling kernel's own CPU
// reference, so the CPU and CUDA backends draw the same token from the same uniform.
#include "engine/sampling.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/random_hash.hpp"
#include "kernels/reference/sample.hpp"

namespace specontext {

int sample_token(const float* logits, std::int64_t vocab, const SamplingParams& p, double u) {
  if (vocab <= 0) throw std::invalid_argument("sample_token: vocabulary size must be positive, got " + std::to_string(vocab));
  if (logits == nullptr) throw std::invalid_argument("sample_token: no logits");
  for (std::int64_t i = 0; i < vocab; ++i)
    if (std::isnan(logits[i])) throw std::invalid_argument("sample_token: logit " + std::to_string(i) + " is NaN");

  std::int64_t best = 0;
  for (std::int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  if (!(p.temperature > 0.0f)) return static_cast<int>(best);

  if (!(u >= 0.0 && u < 1.0)) throw std::invalid_argument("sample_token: u must lie in [0, 1), got " + std::to_string(u));
  // The same procedure as the CUDA sampling kernel, token for token (kernels/reference/sample.hpp):
  // the kept set is every token at least as probable as the last one the top_p mass needs, and
  // the draw walks the kept tokens in index order.
  return static_cast<int>(ref::sample_row(logits, vocab, p.temperature, p.top_p, static_cast<float>(u)));
}

// bits = splitmix64(splitmix64(seed ^ splitmix64(step)) + request); u = (bits >> 11) * 2^-53.
double sampling_uniform(std::uint64_t seed, std::int64_t step, int request) {
  const std::uint64_t stream = rng::splitmix64(seed ^ rng::splitmix64(static_cast<std::uint64_t>(step)));
  const std::uint64_t bits = rng::splitmix64(stream + static_cast<std::uint64_t>(static_cast<std::int64_t>(request)));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace specontext
