// RoPE inverse frequencies as Hugging Face transformers computes them
// (modeling_rope_utils.py: _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
// _compute_llama3_parameters, _compute_yarn_parameters). Arithmetic is in double and rounded once
// to float; transformers works in float32, so values may differ from it in the last bit.
#include "engine/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "sim/config_error.hpp"

namespace specontext {

namespace {

void check_rope(const ModelConfig& c) {
  const long long d = c.shape.head_dim;
  if (d <= 0 || d % 2 != 0)
    throw ConfigError(c.origin, "head_dim", "RoPE needs a positive, even head dimension, got " + std::to_string(d));
  if (!(c.rope.theta > 1.0)) throw ConfigError(c.origin, "rope_theta", "must be greater than 1");
  if (c.rope.scaling != RopeScaling::None && !(c.rope.factor > 0.0))
    throw ConfigError(c.origin, "rope_scaling.factor", "must be positive");
}

// The context length the model was pretrained at, which YaRN's correction range refers to.
double yarn_original_positions(const ModelConfig& c) {
  if (c.rope.original_max_positions > 0) return static_cast<double>(c.rope.original_max_positions);
  if (c.shape.max_positions > 0) return static_cast<double>(c.shape.max_positions);
  throw ConfigError(c.origin, "rope_scaling.original_max_position_embeddings",
                    "YaRN needs the pretrained context length (or max_position_embeddings)");
}

}  // namespace

std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
  check_rope(c);
  const long long d = c.shape.head_dim;
  const long long half = d / 2;
  const double base = c.rope.theta;
  const double factor = c.rope.factor;
  std::vector<double> inv(half);
  for (long long i = 0; i < half; ++i) inv[i] = std::pow(base, -static_cast<double>(2 * i) / static_cast<double>(d));

  switch (c.rope.scaling) {
    case RopeScaling::None:
      break;
    case RopeScaling::Linear:
      for (double& f : inv) f /= factor;
      break;
    case RopeScaling::Llama3: {
      const double original = static_cast<double>(c.rope.original_max_positions);
      if (!(original > 0.0))
        throw ConfigError(c.origin, "rope_scaling.original_max_position_embeddings", "Llama 3 RoPE scaling needs it positive");
      const double low = c.rope.low_freq_factor, high = c.rope.high_freq_factor;
      if (!(high > low) || !(low > 0.0))
        throw ConfigError(c.origin, "rope_scaling.high_freq_factor", "must exceed low_freq_factor (> 0)");
      const double low_freq_wavelen = original / low;
      const double high_freq_wavelen = original / high;
      for (double& f : inv) {
        const double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen > low_freq_wavelen) {
          f = f / factor;
        } else if (wavelen >= high_freq_wavelen) {
          const double smooth = (original / wavelen - low) / (high - low);
          f = (1.0 - smooth) * f / factor + smooth * f;
        }
      }
      break;
    }
    case RopeScaling::Yarn: {
      const double original = yarn_original_positions(c);
      const double dim = static_cast<double>(d);
      // The dimension index at which a frequency completes `rotations` turns over the original context.
      auto correction_dim = [&](double rotations) {
        return dim * std::log(original / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
      };
      double low = std::floor(correction_dim(c.rope.beta_fast));
      double high = std::ceil(correction_dim(c.rope.beta_slow));
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1.0);
      if (low == high) high += 0.001;  // as transformers does, to avoid dividing by zero
      for (long long i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        const double extrapolation_weight = 1.0 - ramp;
        const double extrapolated = inv[i];
        const double interpolated = inv[i] / factor;
        inv[i] = interpolated * (1.0 - extrapolation_weight) + extrapolated * extrapolation_weight;
      }
      break;
    }
  }
  return std::vector<float>(inv.begin(), inv.end());
}

float rope_attention_factor(const ModelConfig& c) {
  if (c.rope.scaling != RopeScaling::Yarn || !(c.rope.factor > 1.0)) return 1.0f;
  return static_cast<float>(0.1 * std::log(c.rope.factor) + 1.0);
}

}  // namespace specontext
