#pragma once
// Rotary position embedding parameters after scaling (Llama 3, linear, YaRN): the one
// definition used by the CPU reference and uploaded to the GPU kernels.
#include <vector>

#include "engine/model_config.hpp"

namespace specontext {

// head_dim / 2 inverse frequencies, pair i rotating (x[i], x[i + head_dim/2]) as Hugging Face
// does (rotate_half), angle = position * inv_freq[i].
std::vector<float> rope_inverse_frequencies(const ModelConfig& c);
// YaRN's attention temperature multiplier applied to cos/sin (1 without YaRN).
float rope_attention_factor(const ModelConfig& c);

}  // namespace specontext
