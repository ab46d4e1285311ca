#pragma once
// The decode loop over any Backend: prefill each request's prompt, then decode all requests
// together one token per step until each has `max_new` tokens (or its EOS), with timing.
#include <vector>

#include "engine/backend.hpp"

namespace specontext {

struct GenerateOptions {
  int max_new = 16;
  SamplingParams sampling;
  bool stop_at_eos = true;
  std::vector<int> eos_token_ids;
};

struct GenerateResult {
  std::vector<std::vector<int>> tokens;  // generated ids per request (the first comes from the prefill)
  double prefill_s = 0;                  // all prompts
  double ttft_s = 0;                     // time to the first token of every request
  double decode_s = 0;                   // the decode steps after the first token
  long long decode_steps = 0;
  double tpot_s() const { return decode_steps > 0 ? decode_s / static_cast<double>(decode_steps) : 0.0; }
  long long generated() const;
  double decode_tokens_per_s() const;  // tokens produced by decode steps over their time
};

GenerateResult generate(Backend& backend, const std::vector<std::vector<int>>& prompts, const GenerateOptions& options);

}  // namespace specontext
