#pragma once
// CPU reference of kernels/sample: the procedure the kernel reproduces token for token.
#include <cstdint>
#include <vector>

namespace specontext::ref {

// One row (logits [vocab] fp32, no NaN) with temperature T, top_p and a uniform u in [0, 1):
//  - greedy (T <= 0), or the maximum not finite (+inf, or every logit -inf): the first index of
//    the maximum;
//  - otherwise p_i = exp((logit_i - max) / T) (sampling_math::token_prob, max token ~1.0) and
//    weights w_i = floor(p_i * 2^40), all sums exact integers;
//  - top_p >= 1 keeps every token; otherwise, walking tokens by decreasing p (ties by index),
//    τ = the p of the first token at which the running weight reaches top_p_target(top_p, Σw),
//    and the kept set is every token with p >= τ (ties with τ included);
//  - K = Σ kept w, R = draw_point(u, K); walk the kept tokens in INDEX order and return the
//    first whose running weight exceeds R.
std::int32_t sample_row(const float* logits, std::int64_t vocab, float temperature, float top_p, float u);

// The same per row: logits [rows, row_stride] (first vocab columns used), u [rows].
std::vector<std::int32_t> sample(const std::vector<float>& logits, std::int64_t rows, std::int64_t vocab, std::int64_t row_stride,
                                 const std::vector<float>& u, float temperature, float top_p);

// The probability threshold τ of a row as above (0 when every token is kept); for the tests.
float sample_threshold(const float* logits, std::int64_t vocab, float temperature, float top_p);

}  // namespace specontext::ref
