#include "kernels/reference/sample.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "kernels/sample_math.hpp"

namespace specontext::ref {
namespace sm = sampling_math;
namespace {

std::int64_t first_argmax(const float* logits, std::int64_t vocab) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

std::vector<float> probs(const float* logits, std::int64_t vocab, float temperature, float max_logit) {
  std::vector<float> p(static_cast<std::size_t>(vocab));
  for (std::int64_t i = 0; i < vocab; ++i) p[i] = sm::token_prob(logits[i], max_logit, temperature);
  return p;
}

float threshold(const std::vector<float>& p, float top_p) {
  if (!(top_p < 1.0f)) return 0.0f;  // NaN too, as the kernel
  std::uint64_t total = 0;
  for (float x : p) total += sm::token_weight(x);
  const std::uint64_t target = sm::top_p_target(top_p, total);
  std::vector<std::int64_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return p[a] > p[b]; });
  std::uint64_t mass = 0;
  for (std::int64_t i : order) {
    mass += sm::token_weight(p[i]);
    if (mass >= target) return p[i];
  }
  return 0.0f;  // unreachable: the full mass reaches any target <= total
}

}  // namespace

float sample_threshold(const float* logits, std::int64_t vocab, float temperature, float top_p) {
  const float max_logit = logits[first_argmax(logits, vocab)];
  return threshold(probs(logits, vocab, temperature, max_logit), top_p);
}

std::int32_t sample_row(const float* logits, std::int64_t vocab, float temperature, float top_p, float u) {
  if (vocab <= 0) throw std::invalid_argument("ref::sample_row: vocab must be positive");
  const std::int64_t best = first_argmax(logits, vocab);
  const float max_logit = logits[best];
  if (!(temperature > 0.0f) || !std::isfinite(max_logit)) return static_cast<std::int32_t>(best);

  const std::vector<float> p = probs(logits, vocab, temperature, max_logit);
  const float tau = threshold(p, top_p);
  std::uint64_t kept_mass = 0;
  for (float x : p)
    if (x >= tau) kept_mass += sm::token_weight(x);
  const std::uint64_t r = sm::draw_point(u, kept_mass);
  std::uint64_t running = 0;
  for (std::int64_t i = 0; i < vocab; ++i) {
    if (!(p[i] >= tau)) continue;
    running += sm::token_weight(p[i]);
    if (running > r) return static_cast<std::int32_t>(i);
  }
  return static_cast<std::int32_t>(best);  // unreachable: r < kept_mass
}

std::vector<std::int32_t> sample(const std::vector<float>& logits, std::int64_t rows, std::int64_t vocab, std::int64_t row_stride,
                                 const std::vector<float>& u, float temperature, float top_p) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) out[r] = sample_row(logits.data() + r * row_stride, vocab, temperature, top_p, u[r]);
  return out;
}

}  // namespace specontext::ref
