// The default decode_sample: logits from decode(), sampled on the host.
#include "engine/backend.hpp"

#include "engine/sampling.hpp"

namespace specontext {

std::vector<int> Backend::decode_sample(const std::vector<int>& requests, const std::vector<int>& tokens,
                                        const SamplingParams& sampling, std::int64_t step) {
  const std::vector<float> logits = decode(requests, tokens);
  const std::int64_t v = vocab();
  std::vector<int> next(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i)
    next[i] = sample_token(logits.data() + static_cast<std::int64_t>(i) * v, v, sampling,
                           sampling_uniform(sampling.seed, step, requests[i]));
  return next;
}

}  // namespace specontext
