#pragma once
// The memory plan of a scenario: thresholds and where layers live as S grows (the
// `specontext plan` output), from the paper's memory model.
#include <nlohmann/json.hpp>

#include "sim/scenario.hpp"

namespace specontext {

struct PlacementSegment {
  long long from = 0;  // first S of the segment
  long long to = 0;    // one past the last S; -1: unbounded
  long long gpu_layers = 0;
  long long cpu_layers = 0;
};

struct Plan {
  std::vector<long long> thresholds;
  std::vector<PlacementSegment> segments;  // the last one ends where nothing fits any more
  long long max_length = 0;                // S_L^T: the first length that no placement fits
  MemoryModelInputs inputs;
};

Plan make_plan(const Scenario& sc);
nlohmann::json to_json(const Plan& p, const Scenario& sc);

}  // namespace specontext
