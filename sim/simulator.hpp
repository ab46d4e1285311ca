#pragma once
// A whole generation: prefill, then one decode step per generated token as the context
// grows from `input` to `input + output`, each step scheduled from its dataflow graph.
// The sum over steps is integrated by trapezoids on the pieces between the context
// lengths where placement changes, doubling the samples until the Richardson estimate
// of the error is below the tolerance; the estimate is reported.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/system_model.hpp"

namespace specontext {

struct StepSample {
  long long S = 0;
  double step_s = 0;
  long long gpu_layers = 0;
  double h2d_bytes = 0;
};

struct SimResult {
  std::string system;
  std::string components;  // specontext only
  bool feasible = false;
  std::string reason;  // why not feasible
  long long requests = 0;
  double throughput_tok_s = 0;         // generated tokens over prefill + decode time
  double decode_throughput_tok_s = 0;  // generated tokens over decode time
  double prefill_s = 0;
  double decode_s = 0;
  double peak_gpu_bytes = 0;
  double peak_host_bytes = 0;
  double h2d_bytes_per_step = 0;  // mean over the decode steps
  double mean_step_s = 0;
  double integration_rel_err = 0;  // estimated relative error of decode_s
  std::vector<StepSample> samples;  // every step length evaluated, by S
};

struct SimOptions {
  double rel_tol = 1e-3;
};

SimResult simulate(const Scenario& sc, const SystemModel& system, const SimOptions& opt = {});

// Runs every feasible request count of a geometric ladder (1, 2, 3, 4, 6, 8, ...) up to the
// system's limit and returns the one with the highest throughput, as the paper runs each
// system at its own request count.
SimResult simulate_best_requests(Scenario sc, const SystemModel& system, const SimOptions& opt = {});

// One decode step at context length S, placed as simulate() places it (or as sc.offloaded_layers
// fixes it): its time, GPU-resident layers and H2D bytes.
StepSample decode_step(const Scenario& sc, const SystemModel& system, long long S);

// The predicted timeline of one decode step at context length S, as a Chrome trace.
nlohmann::json decode_step_trace(const Scenario& sc, const SystemModel& system, long long S);

nlohmann::json to_json(const SimResult& r);

}  // namespace specontext
