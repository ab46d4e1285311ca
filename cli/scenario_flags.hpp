#pragma once
// Flags shared by `plan` and `sim`, and their translation into a ScenarioSpec.
#include <string>

#include <CLI/CLI.hpp>

#include "sim/scenario_loader.hpp"

namespace specontext::cli {

struct ScenarioFlags {
  std::string hw, model, draft, draft_part = "head", buffer_term = "eq7", gpu_mem, systems_file;
  long long requests = 1, budget = 2048;
  bool json = false;

  // `requests_as_text`: sim accepts "best", so it registers --requests itself.
  void add_to(CLI::App& cmd, bool with_requests);
  ScenarioSpec spec() const;
};

// "4294967296", "4e9", "4GB" (10^9), "4GiB" (2^30), "512MiB" ... -> bytes.
double parse_bytes(const std::string& text, const std::string& flag);

}  // namespace specontext::cli
