#include "cli/sweep_runner.hpp"

#include <fstream>
#include <iostream>

#include "sim/config_error.hpp"
#include "sim/sweep.hpp"

namespace specontext::cli {

std::filesystem::path run_sweep_to_csv(const std::filesystem::path& experiment, const std::filesystem::path& dir, unsigned threads) {
  const Experiment e = load_experiment(experiment);
  std::filesystem::create_directories(dir);
  const auto rows = run_experiment(
      e,
      [&](std::size_t done, std::size_t total, const SweepRow& row) {
        std::cerr << "\r[" << e.name << "] " << done << "/" << total << "  " << row.system
                  << (row.components.empty() ? "" : "[" + row.components + "]") << " " << row.hardware << " " << row.model
                  << "                    " << std::flush;
        if (done == total) std::cerr << "\n";
      },
      threads);
  const auto path = dir / (e.name + ".csv");
  std::ofstream out(path);
  if (!out) throw ConfigError(path.string(), "", "cannot write the CSV file");
  out.precision(10);
  write_csv_header(out);
  for (const auto& r : rows) write_csv_row(out, r);
  return path;
}

}  // namespace specontext::cli
