#include "sim/scenario_loader.hpp"

#include <cstdlib>

#include "sim/json_fields.hpp"
#include "sim/system_model.hpp"

#ifndef SPECONTEXT_SOURCE_CONFIGS
#define SPECONTEXT_SOURCE_CONFIGS "configs"
#endif

namespace specontext {

std::filesystem::path configs_dir() {
  if (const char* env = std::getenv("SPECONTEXT_CONFIGS"); env && *env) return env;
  return SPECONTEXT_SOURCE_CONFIGS;
}

std::filesystem::path resolve_config(const std::string& name_or_path, const std::string& kind) {
  std::filesystem::path p(name_or_path);
  if (p.extension() == ".json" || p.has_parent_path()) {
    if (!std::filesystem::exists(p)) throw ConfigError(p.string(), "", "no such file");
    return p;
  }
  std::filesystem::path candidate = configs_dir() / kind / (name_or_path + ".json");
  if (!std::filesystem::exists(candidate))
    throw ConfigError(candidate.string(), "", "no " + kind + " config named '" + name_or_path + "'");
  return candidate;
}

void validate_workload(const Workload& w, const std::string& origin) {
  if (w.input <= 0) throw ConfigError(origin, "input", "must be a positive number of tokens");
  if (w.output <= 0) throw ConfigError(origin, "output", "must be a positive number of tokens");
  if (w.requests <= 0) throw ConfigError(origin, "requests", "must be positive");
  if (w.budget <= 0) throw ConfigError(origin, "budget", "must be a positive number of tokens");
}

Scenario make_scenario(const ScenarioSpec& spec) {
  validate_workload(spec.workload, "workload");
  if (!(spec.overlap >= 0 && spec.overlap <= 1)) throw ConfigError("--overlap", "", "must be within [0, 1]");
  make_system(spec.system);  // an unknown name fails here, listing the known ones
  Scenario sc;
  const auto hw_path = resolve_config(spec.hardware, "hardware");
  sc.hw = with_overrides(load_hardware(hw_path), spec.hardware_overrides, hw_path.string());
  sc.model = load_model_config(resolve_config(spec.model, "models"));
  if (sc.model.eagle3_draft) throw ConfigError(sc.model.origin, "draft_vocab_size", "this is an EAGLE-3 draft, not a target model");
  if (spec.draft.empty()) {
    sc.draft = eagle3_draft_for(sc.model);
  } else {
    sc.draft = load_model_config(resolve_config(spec.draft, "models"));
    if (!sc.draft.eagle3_draft) throw ConfigError(sc.draft.origin, "draft_vocab_size", "not an EAGLE-3 draft config");
    if (sc.draft.q_heads != sc.model.q_heads || sc.draft.kv_heads != sc.model.kv_heads || sc.draft.head_dim != sc.model.head_dim)
      throw ConfigError(sc.draft.origin, "num_key_value_heads", "the draft's attention heads differ from the target's (PAPER.md §1.6 needs the same configuration)");
    if (sc.draft.target_hidden != sc.model.hidden)
      throw ConfigError(sc.draft.origin, "target_hidden_size", "the draft reads features of width " + std::to_string(sc.draft.target_hidden) +
                                                                ", the target's hidden size is " + std::to_string(sc.model.hidden));
    if (sc.draft.vocab != sc.model.vocab)
      throw ConfigError(sc.draft.origin, "vocab_size", "the draft shares the target's embedding, but its vocabulary differs (" +
                                                         std::to_string(sc.draft.vocab) + " vs " + std::to_string(sc.model.vocab) + ")");
  }
  sc.draft_part = spec.draft_part;
  sc.workload = spec.workload;
  sc.components = parse_components(spec.components);
  sc.gpu_memory_bytes = sc.hw.gpu_memory_bytes;
  if (spec.gpu_memory_cap) {
    if (!(*spec.gpu_memory_cap > 0)) throw ConfigError("--gpu-mem", "", "must be a positive number of bytes");
    sc.gpu_memory_bytes = std::min(sc.gpu_memory_bytes, *spec.gpu_memory_cap);
  }
  sc.overlap = spec.overlap;
  sc.buffer_term = spec.buffer_term;
  const std::filesystem::path systems = spec.systems_file.empty() ? configs_dir() / "systems.json" : std::filesystem::path(spec.systems_file);
  const nlohmann::json all = read_json_file(systems);
  if (!all.contains(spec.system)) throw ConfigError(systems.string(), spec.system, "no parameters for this system");
  sc.system_params = all.at(spec.system);
  sc.params_origin = systems.string() + " [" + spec.system + "]";
  return sc;
}

}  // namespace specontext
