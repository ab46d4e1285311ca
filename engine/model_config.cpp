#include "engine/model_config.hpp"

#include <cmath>
#include <set>

#include "sim/json_fields.hpp"

namespace specontext {
namespace {

const std::set<std::string> kEngineArchitectures = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"};

double positive_number(const JsonFields& f, const std::string& key) {
  const auto& v = f.raw(key);
  if (!v.is_number()) f.fail(key, "expected a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || !(x > 0)) f.fail(key, "must be a positive number, got " + v.dump());
  return x;
}

// Fields of rope_scaling the engine reads; any other key would change the frequencies in a way
// RopeConfig cannot represent, so it is rejected rather than ignored.
const std::set<std::string> kRopeKeys = {"rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
                                         "original_max_position_embeddings", "beta_fast", "beta_slow"};

// `rs` is rope_scaling (or transformers 5's rope_parameters, which also holds rope_theta).
void parse_rope_scaling(const nlohmann::json& rs, const std::string& field, const std::string& origin,
                        long long max_positions, RopeConfig& rope) {
  auto fail = [&](const std::string& what) -> void { throw ConfigError(origin, field, what); };
  if (!rs.is_object()) fail("expected an object or null");
  for (const auto& [key, _] : rs.items())
    if (!kRopeKeys.count(key) && !(field == "rope_parameters" && key == "rope_theta"))
      fail("unsupported key '" + key + "' (the engine reads " +
           "rope_type/type, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings, beta_fast, beta_slow)");
  const nlohmann::json type_field = rs.contains("rope_type") ? rs.at("rope_type") : rs.value("type", nlohmann::json("default"));
  if (!type_field.is_string()) fail("rope_type must be a string");
  const std::string type = type_field.get<std::string>();

  auto number = [&](const char* key, bool required, double fallback) -> double {
    if (!rs.contains(key) || rs.at(key).is_null()) {
      if (required) fail(std::string("'") + key + "' is required for rope_type '" + type + "'");
      return fallback;
    }
    const auto& v = rs.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || !(v.get<double>() > 0))
      fail(std::string("'") + key + "' must be a positive number, got " + v.dump());
    return v.get<double>();
  };
  auto integer = [&](const char* key, bool required, long long fallback) -> long long {
    const double x = number(key, required, static_cast<double>(fallback));
    if (x != std::floor(x)) fail(std::string("'") + key + "' must be an integer");
    return static_cast<long long>(x);
  };

  if (type == "default") {
    rope.scaling = RopeScaling::None;
  } else if (type == "linear") {
    rope.scaling = RopeScaling::Linear;
    rope.factor = number("factor", true, 1.0);
  } else if (type == "llama3") {
    rope.scaling = RopeScaling::Llama3;
    rope.factor = number("factor", true, 1.0);
    rope.low_freq_factor = number("low_freq_factor", true, 1.0);
    rope.high_freq_factor = number("high_freq_factor", true, 4.0);
    rope.original_max_positions = integer("original_max_position_embeddings", true, 0);
    if (!(rope.high_freq_factor > rope.low_freq_factor))
      fail("high_freq_factor must be larger than low_freq_factor (Llama 3 divides by their difference)");
  } else if (type == "yarn") {
    rope.scaling = RopeScaling::Yarn;
    rope.factor = number("factor", true, 1.0);
    // As in transformers: without original_max_position_embeddings YaRN uses max_position_embeddings.
    if (!rs.contains("original_max_position_embeddings") && max_positions <= 0)
      fail("'original_max_position_embeddings' is required for rope_type 'yarn' when max_position_embeddings is absent");
    rope.original_max_positions = integer("original_max_position_embeddings", false, max_positions);
    rope.beta_fast = number("beta_fast", false, 32.0);
    rope.beta_slow = number("beta_slow", false, 1.0);
  } else {
    fail("rope_type '" + type + "' is not supported by the engine (default, linear, llama3 or yarn)");
  }
}

std::string folder_name(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "models/llama/" has an empty filename
  return p.filename().string();
}

// Everything but the architecture checks: the fields that change a layer's output.
void parse_layer_fields(const JsonFields& f, const std::string& origin, ModelConfig& c) {
  // Fields the simulator may ignore (they do not change sizes) but that change the engine's output.
  if (f.has("hidden_act") && f.string("hidden_act") != "silu")
    f.fail("hidden_act", "the engine's MLP is SwiGLU (silu), not '" + f.string("hidden_act") + "'");
  if (f.has("partial_rotary_factor") && f.number("partial_rotary_factor") != 1.0)
    f.fail("partial_rotary_factor", "partial rotary embeddings are not supported");
  if (f.boolean_or("rope_interleave", false)) f.fail("rope_interleave", "interleaved RoPE is not supported");
  if (c.shape.architecture == "MistralForCausalLM" && f.has("sliding_window")) {
    const long long window = f.integer("sliding_window");
    if (c.shape.max_positions <= 0 || window < c.shape.max_positions)
      f.fail("sliding_window", "Mistral's sliding-window attention is not supported (window " +
                                   std::to_string(window) + ")");
  }
  if (f.has("layer_types")) {
    const auto& types = f.raw("layer_types");
    if (!types.is_array()) f.fail("layer_types", "expected a list");
    for (const auto& t : types)
      if (t != "full_attention") f.fail("layer_types", "only full_attention layers are supported, got " + t.dump());
  }

  if (f.has("rope_theta")) c.rope.theta = positive_number(f, "rope_theta");
  if (f.has("rope_scaling")) {
    parse_rope_scaling(f.raw("rope_scaling"), "rope_scaling", origin, c.shape.max_positions, c.rope);
  } else if (f.has("rope_parameters")) {
    const auto& rp = f.raw("rope_parameters");
    parse_rope_scaling(rp, "rope_parameters", origin, c.shape.max_positions, c.rope);
    if (rp.contains("rope_theta")) {
      const auto& t = rp.at("rope_theta");
      if (!t.is_number() || !(t.get<double>() > 0))
        f.fail("rope_parameters", "'rope_theta' must be a positive number");
      c.rope.theta = t.get<double>();
    }
  }

  if (!f.has("rms_norm_eps")) f.fail("rms_norm_eps", "missing (the RMSNorm epsilon is required)");
  c.rms_norm_eps = positive_number(f, "rms_norm_eps");

  if (f.has("eos_token_id")) {
    const auto& e = f.raw("eos_token_id");
    std::vector<nlohmann::json> ids;
    if (e.is_array()) ids.assign(e.begin(), e.end());
    else ids.push_back(e);
    for (const auto& id : ids) {
      if (!id.is_number_integer()) f.fail("eos_token_id", "expected an integer or a list of integers, got " + e.dump());
      const long long v = id.get<long long>();
      if (v < 0 || v >= c.shape.vocab)
        f.fail("eos_token_id", "token id " + std::to_string(v) + " is outside the vocabulary (vocab_size " +
                                   std::to_string(c.shape.vocab) + ")");
      c.eos_token_ids.push_back(static_cast<int>(v));
    }
  }
}

}  // namespace

ModelConfig parse_engine_config(const nlohmann::json& j, const std::string& origin) {
  ModelConfig c;
  c.origin = origin;
  c.shape = parse_model_config(j, origin);
  JsonFields f(j, origin);

  if (!kEngineArchitectures.count(c.shape.architecture))
    f.fail("architectures", "the engine runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and "
                            "Qwen3ForCausalLM, not '" + c.shape.architecture + "'");
  if (c.shape.kv_lora_rank > 0) f.fail("kv_lora_rank", "MLA (latent KV) is not supported by the engine");
  if (c.shape.eagle3_draft)
    f.fail(f.has("draft_vocab_size") ? "draft_vocab_size" : "architectures",
           "an EAGLE-3 draft is not a target model the engine can run");
  parse_layer_fields(f, origin, c);
  return c;
}

ModelConfig parse_layer_config(const nlohmann::json& j, const std::string& origin) {
  ModelConfig c;
  c.origin = origin;
  c.shape = parse_model_config(j, origin);
  JsonFields f(j, origin);
  if (c.shape.kv_lora_rank > 0) f.fail("kv_lora_rank", "MLA (latent KV) is not supported by the engine");
  parse_layer_fields(f, origin, c);
  return c;
}

ModelConfig load_engine_config(const std::filesystem::path& dir_or_file) {
  std::error_code ec;
  if (!std::filesystem::exists(dir_or_file, ec))
    throw ConfigError(dir_or_file.string(), "", "no such file or folder");
  const bool is_dir = std::filesystem::is_directory(dir_or_file, ec);
  const std::filesystem::path file = is_dir ? dir_or_file / "config.json" : dir_or_file;
  if (is_dir && !std::filesystem::is_regular_file(file, ec))
    throw ConfigError(file.string(), "", "missing: a checkpoint folder must hold config.json");
  ModelConfig c = parse_engine_config(read_json_file(file), file.string());
  // A checkpoint's config is always config.json, so its folder says which model it is.
  c.shape.name = is_dir || file.stem() == "config" ? folder_name(is_dir ? dir_or_file : file.parent_path())
                                                   : file.stem().string();
  return c;
}

}  // namespace specontext
