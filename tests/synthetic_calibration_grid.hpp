#pragma once
// The calibration grid of bench/calibration_grid.sh (dense R x S; specontext B x R x S with the memory
// model's placement, 4 and 8 layers on the copy stream, 4 layers loaded synchronously), "measured" by
// the simulator itself under known hardware parameters: what the calibration must recover exactly.
#include <string>
#include <vector>

#include "sim/calibration.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/simulator.hpp"

namespace specontext::testing {

inline Measurement calibration_point(const std::string& system, long long R, long long S, const std::string& components = "", long long B = 0,
                                     long long offloaded = 0) {
  Measurement m;
  m.gpu = "NVIDIA H200";
  m.driver = "580.1";
  m.cuda = "13.0";
  m.date = "2026-12-10";
  m.system = system;
  m.model = "llama-3.1-8b";
  m.requests = R;
  m.depth = S;
  m.steps = 6;
  m.reps = 3;
  m.median_ms = m.min_ms = m.max_ms = 10;
  if (system == "specontext") {
    m.components = components;
    m.draft = "eagle3-llama-3.1-8b";
    m.budget = B;
    m.overlap = 0.8;
    m.offloaded_layers = offloaded;
    m.prefetch = components == "c1" ? "sync" : "async";
  }
  return m;
}

// 76 points, lines numbered as in a file.
inline std::vector<Measurement> calibration_grid() {
  std::vector<Measurement> out;
  for (long long R : {1, 4, 16, 32})
    for (long long S : {2048, 8192, 16384}) out.push_back(calibration_point("full", R, S));
  const auto specontext = make_system("specontext");
  for (long long B : {1024, 2048})
    for (long long R : {8, 32})
      for (long long S : {8192, 16384, 24576, 32768}) {
        // bench --offload-layers auto: the memory model's placement at the point's final length.
        ScenarioSpec spec;
        spec.hardware = "h200";
        spec.model = "llama-3.1-8b";
        spec.system = "specontext";
        spec.workload = {S, 20, R, B};
        const Scenario sc = make_scenario(spec);
        out.push_back(calibration_point("specontext", R, S, "c1,c2,c3", B, sc.model.layers - specontext->memory_at(sc, S + 20).gpu_layers));
        out.push_back(calibration_point("specontext", R, S, "c1,c2", B, 4));
        out.push_back(calibration_point("specontext", R, S, "c1,c2", B, 8));
        out.push_back(calibration_point("specontext", R, S, "c1", B, 4));
      }
  for (std::size_t i = 0; i < out.size(); ++i) out[i].line = static_cast<int>(i) + 2;
  return out;
}

// The hardware the synthetic grid is measured on: the H200 file with four parameters moved.
inline Hardware synthetic_truth() {
  Hardware hw = load_hardware(resolve_config("h200", "hardware"));
  hw.hbm_efficiency = 0.80;
  hw.kernel_gap_s = 3e-6;
  hw.h2d_bandwidth_Bps *= 0.85;
  hw.gather_gpu_slowdown = 0.15;
  hw.hbm_gather_efficiency = 0.65;
  return hw;
}

// The grid's CSV with each point's step as the simulator predicts it under `truth`.
inline std::string synthetic_calibration_csv(const Hardware& truth) {
  std::vector<Measurement> pts = calibration_grid();
  for (Measurement& p : pts) {
    p.median_ms = PointModel(p, "h200", "synthetic").step_ms(truth);
    p.min_ms = p.median_ms * 0.999;
    p.max_ms = p.median_ms * 1.001;
  }
  return measurements_csv(pts);
}

}  // namespace specontext::testing
