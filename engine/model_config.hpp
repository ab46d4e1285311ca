#pragma once
// A checkpoint's config.json as the engine needs it: the shape (parsed by the simulator's
// parser, one parser for both), plus RoPE, norm epsilon and end-of-sequence ids.
// Supported architectures: LlamaForCausalLM (with Llama 3 RoPE scaling), MistralForCausalLM,
// Qwen2ForCausalLM (QKV bias), Qwen3ForCausalLM (q/k norms). MHA, GQA and MQA.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/model_shape.hpp"

namespace specontext {

enum class RopeScaling { None, Linear, Llama3, Yarn };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // Llama 3
  double high_freq_factor = 4.0;  // Llama 3
  long long original_max_positions = 0;
  double beta_fast = 32.0, beta_slow = 1.0;  // YaRN
};

struct ModelConfig {
  ModelShape shape;
  RopeConfig rope;
  double rms_norm_eps = 1e-6;
  std::vector<int> eos_token_ids;
  std::string origin;  // the config.json it came from
};

// Reads DIR/config.json, or a config.json path. Rejects architectures the engine cannot run
// (naming the field) and MLA/EAGLE-3 drafts (the engine's target models are standard layers).
ModelConfig load_engine_config(const std::filesystem::path& dir_or_file);
ModelConfig parse_engine_config(const nlohmann::json& j, const std::string& origin);
// The same fields without the architecture checks, for configs whose layers are the engine's
// but that are not a target model: an EAGLE-3 draft's (engine/eagle3_draft.hpp checks the rest).
ModelConfig parse_layer_config(const nlohmann::json& j, const std::string& origin);

}  // namespace specontext
