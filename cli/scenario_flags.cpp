#include "cli/scenario_flags.hpp"

#include <cmath>

#include "sim/config_error.hpp"

namespace specontext::cli {

void ScenarioFlags::add_to(CLI::App& cmd, bool with_requests) {
  cmd.add_option("--hw", hw, "hardware config: a name in configs/hardware/ (h200, a800-80g, ...) or a path")->required();
  cmd.add_option("--model", model, "model config.json: a name in configs/models/ or a path")->required();
  cmd.add_option("--draft", draft, "EAGLE-3 draft config (default: one derived from the model's shape)");
  cmd.add_option("--draft-part", draft_part, "M_D: the full draft, the retrieval head (head) or the head on embeddings only (head-embed)")
      ->check(CLI::IsMember({"full", "head", "head-embed"}))
      ->capture_default_str();
  cmd.add_option("--budget", budget, "KV budget B, tokens per KV head")->capture_default_str();
  cmd.add_option("--gpu-mem", gpu_mem, "cap GPU memory (bytes, or with GB/GiB/MB/MiB), e.g. the paper's 4GB edge setup");
  cmd.add_option("--buffer-term", buffer_term, "thresholds' buffer term: eq7 (consistent with Eq. 7) or printed (the paper's Alg. 2)")
      ->check(CLI::IsMember({"eq7", "printed"}))
      ->capture_default_str();
  cmd.add_option("--systems-file", systems_file, "system parameters (default configs/systems.json)");
  if (with_requests) cmd.add_option("--requests", requests, "requests decoded together (R)")->capture_default_str();
  cmd.add_flag("--json", json, "print JSON instead of a table");
}

ScenarioSpec ScenarioFlags::spec() const {
  ScenarioSpec s;
  s.hardware = hw;
  s.model = model;
  s.draft = draft;
  s.draft_part = parse_draft_part(draft_part);
  s.buffer_term = parse_buffer_term(buffer_term);
  s.workload.requests = requests;
  s.workload.budget = budget;
  if (!gpu_mem.empty()) s.gpu_memory_cap = parse_bytes(gpu_mem, "--gpu-mem");
  s.systems_file = systems_file;
  return s;
}

double parse_bytes(const std::string& text, const std::string& flag) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw ConfigError(flag, "", "expected a size in bytes, got '" + text + "'");
  }
  const std::string unit = text.substr(used);
  double scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  else if (unit == "KiB") scale = 1024.0;
  else if (unit == "MiB") scale = 1024.0 * 1024;
  else if (unit == "GiB") scale = 1024.0 * 1024 * 1024;
  else throw ConfigError(flag, "", "unknown unit '" + unit + "' (use B, KB, MB, GB, KiB, MiB or GiB)");
  if (!(value > 0) || !std::isfinite(value)) throw ConfigError(flag, "", "must be a positive size, got '" + text + "'");
  return value * scale;
}

}  // namespace specontext::cli
