// specontext sweep: run an experiment grid and write its CSV.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/sweep_runner.hpp"

namespace specontext::cli {

void add_sweep_command(CLI::App& app) {
  auto experiment = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>();
  auto threads = std::make_shared<unsigned>(0);
  CLI::App* cmd = app.add_subcommand("sweep", "run a hardware x model x system x budget x workload grid and write CSV");
  cmd->add_option("--experiment", *experiment, "experiment file, e.g. configs/experiments/budget-sweep.json")->required();
  cmd->add_option("--out", *out_dir, "output folder; the CSV is <out>/<experiment name>.csv")->required();
  cmd->add_option("--threads", *threads, "worker threads (0: one per core)")->capture_default_str();
  cmd->callback([=]() {
    const auto csv = run_sweep_to_csv(*experiment, *out_dir, *threads);
    std::cout << csv.string() << "\n";
  });
}

}  // namespace specontext::cli
