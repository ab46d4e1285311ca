#pragma once
// Experiments: grids of hardware x model x system x budget x workload x request mode,
// read from configs/experiments/*.json and written as CSV rows.
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "sim/scenario_loader.hpp"
#include "sim/simulator.hpp"

namespace specontext {

struct HardwareChoice {
  std::string config;        // name or path
  std::string variant;       // what-if name, empty for the card as configured
  nlohmann::json overrides;  // fields replaced for the what-if
};

struct ModelChoice {
  std::string model;
  std::string draft;  // empty: derived
};

struct SystemChoice {
  std::string system;
  std::string components;  // specontext only
};

struct Experiment {
  std::string name;
  std::string description;
  std::string origin;
  std::vector<HardwareChoice> hardware;
  std::vector<ModelChoice> models;
  std::vector<SystemChoice> systems;
  std::vector<long long> budgets;
  std::vector<std::pair<long long, long long>> workloads;  // [input, output]
  std::vector<std::optional<long long>> requests;          // nullopt: best
  std::optional<double> gpu_memory_cap;
  double overlap = 0.8;
  DraftPart draft_part = DraftPart::HeadEagleInput;
};

Experiment load_experiment(const std::filesystem::path& path);

struct SweepRow {
  std::string experiment, hardware, hardware_variant, model, system, components;
  long long budget = 0, input = 0, output = 0;
  std::string requests_mode;
  double gpu_mem_bytes = 0, overlap = 0;
  SimResult result;
};

using Progress = std::function<void(std::size_t done, std::size_t total, const SweepRow& row)>;

// Runs the grid on `threads` workers (0: hardware concurrency); rows come back in grid order.
std::vector<SweepRow> run_experiment(const Experiment& e, const Progress& progress = {}, unsigned threads = 0);

void write_csv_header(std::ostream& out);
// A CSV cell: quoted (with doubled quotes) when it holds a comma, a quote or a newline.
std::string csv_quote(const std::string& s);
void write_csv_row(std::ostream& out, const SweepRow& row);

}  // namespace specontext
