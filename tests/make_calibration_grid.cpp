// Writes the synthetic calibration grid (tests/synthetic_calibration_grid.hpp) for the command-line
// tests of `specontext calibrate` and `calibrate --check` (tests/CMakeLists.txt).
// usage: specontext_make_calibration_grid FILE
#include <filesystem>
#include <fstream>
#include <iostream>

#include "tests/synthetic_calibration_grid.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: specontext_make_calibration_grid FILE\n";
    return 2;
  }
  const std::filesystem::path file(argv[1]);
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file);
  if (!out) {
    std::cerr << argv[1] << ": cannot write\n";
    return 1;
  }
  out << specontext::testing::synthetic_calibration_csv(specontext::testing::synthetic_truth());
  return out ? 0 : 1;
}
