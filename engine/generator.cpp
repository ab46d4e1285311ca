#include "engine/generator.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

#include "engine/sampling.hpp"

namespace specontext {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

long long GenerateResult::generated() const {
  long long n = 0;
  for (const auto& t : tokens) n += static_cast<long long>(t.size());
  return n;
}

double GenerateResult::decode_tokens_per_s() const {
  const long long from_decode = generated() - static_cast<long long>(tokens.size());
  return decode_s > 0 ? static_cast<double>(from_decode) / decode_s : 0.0;
}

GenerateResult generate(Backend& backend, const std::vector<std::vector<int>>& prompts, const GenerateOptions& o) {
  if (prompts.empty()) throw std::invalid_argument("generate: no prompt");
  if (static_cast<long long>(prompts.size()) > backend.max_requests())
    throw std::invalid_argument("generate: " + std::to_string(prompts.size()) + " requests, the backend holds " + std::to_string(backend.max_requests()));
  if (o.max_new <= 0) throw std::invalid_argument("generate: --max-new must be positive");
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    if (prompts[r].empty()) throw std::invalid_argument("generate: request " + std::to_string(r) + " has an empty prompt");
    const long long needed = static_cast<long long>(prompts[r].size()) + o.max_new;
    if (needed > backend.max_context())
      throw std::invalid_argument("generate: prompt of " + std::to_string(prompts[r].size()) + " tokens + " + std::to_string(o.max_new) +
                                  " new needs a context of " + std::to_string(needed) + ", the backend holds " + std::to_string(backend.max_context()));
  }
  const auto is_eos = [&](int t) { return o.stop_at_eos && std::find(o.eos_token_ids.begin(), o.eos_token_ids.end(), t) != o.eos_token_ids.end(); };

  GenerateResult res;
  res.tokens.resize(prompts.size());
  std::vector<bool> done(prompts.size(), false);
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    backend.reset(static_cast<int>(r));
    const std::vector<float> logits = backend.prefill(static_cast<int>(r), prompts[r]);
    const int first = sample_token(logits.data(), backend.vocab(), o.sampling, sampling_uniform(o.sampling.seed, 0, static_cast<int>(r)));
    res.tokens[r].push_back(first);
    done[r] = is_eos(first) || o.max_new == 1;
  }
  res.prefill_s = res.ttft_s = seconds_since(t0);

  const auto t1 = std::chrono::steady_clock::now();
  for (std::int64_t step = 1; step < o.max_new; ++step) {
    std::vector<int> requests, tokens;
    for (std::size_t r = 0; r < prompts.size(); ++r)
      if (!done[r]) {
        requests.push_back(static_cast<int>(r));
        tokens.push_back(res.tokens[r].back());
      }
    if (requests.empty()) break;
    const std::vector<int> next = backend.decode_sample(requests, tokens, o.sampling, step);
    ++res.decode_steps;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      auto& out = res.tokens[static_cast<std::size_t>(requests[i])];
      out.push_back(next[i]);
      if (is_eos(next[i]) || static_cast<int>(out.size()) >= o.max_new) done[static_cast<std::size_t>(requests[i])] = true;
    }
  }
  res.decode_s = seconds_since(t1);
  return res;
}

}  // namespace specontext
