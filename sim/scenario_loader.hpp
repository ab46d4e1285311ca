#pragma once
// Builds scenarios from names or paths: `--hw h200` finds configs/hardware/h200.json,
// `--model llama-3.1-8b` finds configs/models/llama-3.1-8b.json; a path is used as given.
#include <filesystem>
#include <optional>
#include <string>

#include "sim/scenario.hpp"

namespace specontext {

// The configs folder: $SPECONTEXT_CONFIGS, else the source tree's configs/ (compiled in).
std::filesystem::path configs_dir();
std::filesystem::path resolve_config(const std::string& name_or_path, const std::string& kind);

struct ScenarioSpec {
  std::string hardware;       // name or path
  nlohmann::json hardware_overrides;  // what-if fields, may be null
  std::string model;          // name or path
  std::string draft;          // name or path; empty: derived from the model (eagle3_draft_for)
  std::string system;
  std::string components = "c1,c2,c3";
  DraftPart draft_part = DraftPart::HeadEagleInput;
  Workload workload;
  std::optional<double> gpu_memory_cap;  // bytes
  double overlap = 0.8;
  BufferTerm buffer_term = BufferTerm::Eq7;
  std::string systems_file;  // empty: configs/systems.json
};

Scenario make_scenario(const ScenarioSpec& spec);

// Checks a workload and names the offending flag or field.
void validate_workload(const Workload& w, const std::string& origin);

}  // namespace specontext
