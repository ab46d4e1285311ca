#pragma once
// Scenarios from the shipped configs, for the system and simulator tests.
#include <string>

#include "sim/scenario_loader.hpp"

namespace specontext::testing {

inline Scenario scenario(const std::string& system, const std::string& hw, const std::string& model, long long in, long long out,
                         long long requests, long long budget = 2048, const std::string& components = "c1,c2,c3") {
  ScenarioSpec spec;
  spec.hardware = hw;
  spec.model = model;
  spec.system = system;
  spec.components = components;
  spec.workload = {in, out, requests, budget};
  return make_scenario(spec);
}

}  // namespace specontext::testing
