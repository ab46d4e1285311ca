#pragma once
// Runs one experiment file with progress on stderr and writes <dir>/<name>.csv.
#include <filesystem>

namespace specontext::cli {

std::filesystem::path run_sweep_to_csv(const std::filesystem::path& experiment, const std::filesystem::path& dir, unsigned threads);

}  // namespace specontext::cli
