#pragma once
// The simulator calibrated against the engine: decode steps measured by `specontext bench` on a
// machine are predicted point by point, the hardware's efficiency and overhead parameters are fitted
// to a part of them, and the rest checks the fit (sim/VALIDATION.md has the method and the results).
//
// The measurements file (bench/results/calibration/*.csv; bench/bench_to_calibration_csv.py writes
// it from bench's JSON): CSV (RFC 4180: a field holding a comma, such as "c1,c2", is quoted), one
// header line naming these columns (in any order), then one measured point per line:
//
//   gpu, driver, cuda, date  the machine (every line must name the same gpu), its driver (the kernel
//                            module's release, or the CUDA version the driver supports), the CUDA
//                            runtime, the day of the measurement (YYYY-MM-DD)
//   system                   full (dense attention, every layer's KV on the GPU) or specontext
//   components               specontext: c1, "c1,c2" or "c1,c2,c3" (the paper's ablation); full: empty
//   model, draft             configs/models names (or paths); draft: the EAGLE-3 draft (specontext only)
//   requests, depth          R, and the context length S the timed steps start at
//   budget, overlap          specontext: B, and the stated overlap of the synthetic selection stream
//                            (bench --overlap); full: empty
//   offloaded_layers         layers whose KV was in host memory while timed (as measured; full: 0)
//   prefetch                 specontext: async (copy-stream loads, c2) or sync (loads on the compute
//                            stream before each layer, c1 without c2); full: empty
//   steps, reps              timed steps per repetition, repetitions
//   median_ms, min_ms, max_ms  ms per step: median and range over the repetitions' means
//
// Each point is predicted as one decode step at S = depth with the point's placement imposed
// (Scenario::offloaded_layers) and the engine's software described as bench runs it
// (engine_system_params). Errors are relative: predicted / measured - 1.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/hardware.hpp"
#include "sim/scenario.hpp"
#include "sim/system_model.hpp"

namespace specontext {

// The header line's columns, in the order the writer puts them.
const std::vector<std::string>& measurement_columns();

struct Measurement {
  int line = 0;  // in the file (the header is line 1)
  std::string gpu, driver, cuda, date, system, components, model, draft, prefetch;
  long long requests = 0, depth = 0, budget = 0, offloaded_layers = 0, steps = 0, reps = 0;
  double overlap = 0, median_ms = 0, min_ms = 0, max_ms = 0;
};

struct Measurements {
  std::string origin;  // the file, as named to the user
  std::uint64_t fingerprint = 0;  // FNV-1a of the file's bytes: which file a calibration was fitted to
  std::vector<Measurement> points;
};

// Errors name the file, the line and the column.
Measurements parse_measurements(const std::string& text, const std::string& origin);
Measurements load_measurements(const std::filesystem::path& file, const std::string& origin = "");
std::string measurements_csv(const std::vector<Measurement>& points);  // header line and rows

// The deterministic split: the points are ordered by a hash of what identifies them (system,
// components, R, S, B, overlap, placement, prefetch; the line breaks ties) and every third in that
// order is held out: floor(N / 3) points (20 of 60), spread over the grid whatever order the file
// lists it in, and the same for a file whose rows were reordered.
struct Split {
  std::vector<std::size_t> fit, heldout;  // indices into Measurements::points, in file order
};
Split split_points(const std::vector<Measurement>& points);

// The engine's software as `specontext bench` runs it, in the simulator's system parameters: one
// CUDA graph replayed per step (no per-layer host dispatch), bench's default 4-layer prefetch groups
// and elastic synchronous loads (sim/systems/specontext.cpp).
nlohmann::json engine_system_params();

// One measured point as the simulator sees it: its scenario and its decode step's graph, built once
// (a step's ops and their order do not depend on the hardware, only their schedule does), then
// predicted under any hardware.
class PointModel {
 public:
  PointModel(const Measurement& m, const std::string& hardware, const std::string& origin);
  double step_ms(const Hardware& hw) const;
  // The predicted step as a Chrome trace (sim/step_graph.hpp), to open beside the engine's measured one.
  nlohmann::json chrome_trace(const Hardware& hw, const std::string& title) const;
  const Scenario& scenario() const { return sc_; }

 private:
  Scenario sc_;
  std::shared_ptr<const StepGraph> step_;
};

// The fitted parameters: hardware fields, searched in log space within bounds.
struct FittedParameter {
  std::string field;    // hardware field, e.g. "hbm_efficiency"
  double prior = 0;     // the hardware file's value
  double value = 0;     // fitted (the prior where not constrained)
  double lower = 0, upper = 0;
  double sensitivity = 0;   // RMS change of the points' relative errors per unit change of log(value), at the fit
  bool constrained = false;  // fitted: its sensitivity at the prior was >= kMinSensitivity; else kept at the prior
  bool at_bound = false;
  double rel_std_err = 0;   // 1-sigma relative uncertainty from the Jacobian (constrained ones)
};
constexpr double kMinSensitivity = 0.01;  // a factor e moving predictions < 1% RMS: left to its source

struct PointError {
  std::size_t index = 0;  // into Measurements::points
  double measured_ms = 0, predicted_ms = 0, err_pct = 0;
};

struct ErrorSummary {
  std::size_t points = 0;
  double median_abs_err_pct = 0, max_abs_err_pct = 0;
};
ErrorSummary summarize(const std::vector<PointError>& errors);

// The targets for the held-out decode steps.
constexpr double kTargetMedianAbsErrPct = 5.0, kTargetMaxAbsErrPct = 15.0;
constexpr std::size_t kMinHeldoutPoints = 20;

struct FitResult {
  Hardware hardware;  // the prior hardware with the fitted fields
  std::vector<FittedParameter> parameters;
  std::vector<PointError> fit_errors;
  int iterations = 0;
  bool converged = false;
};

// `hardware` names the prior (configs/hardware name or path); fits to the points `fit`.
FitResult fit_hardware(const Measurements& m, const std::vector<std::size_t>& fit, const std::string& hardware);

// Predicts the points `which` under `hw` (built from `hardware`'s configs for the scenario).
std::vector<PointError> evaluate(const Measurements& m, const std::vector<std::size_t>& which, const std::string& hardware,
                                 const Hardware& hw);

// The hardware file `original` with the fitted fields replaced, each with a source naming the
// measurements, their fingerprint and the date.
nlohmann::json calibrated_hardware_json(const nlohmann::json& original, const FitResult& fit, const Measurements& m, const std::string& date);

struct CheckReport {
  std::string calibrated;  // the file checked
  std::vector<PointError> heldout;
  ErrorSummary summary;  // of the held-out points: what the targets judge
  std::vector<PointError> fit;  // with_fit_points: the fit part too, to see every residual
  bool fitted_to_these = false;  // the calibrated file names these measurements' fingerprint
  bool targets_met = false;
};
CheckReport check_calibration(const Measurements& m, const std::filesystem::path& calibrated, bool with_fit_points = false);
// {"measurements", "fingerprint", "calibrated", "fitted_to_these_measurements", "heldout_points",
//  "median_abs_err_pct", "max_abs_err_pct", "targets", "targets_met", "points": [per point], and with the
//  fit part "fit_points": {"count", "median_abs_err_pct", "max_abs_err_pct", "points"}}.
nlohmann::json to_json(const CheckReport& r, const Measurements& m);
// Per point: line, system, components, requests, depth, budget, overlap, offloaded_layers, prefetch,
// measured_ms, predicted_ms, err_pct.
nlohmann::json to_json(const Measurements& m, const std::vector<PointError>& errors);

std::uint64_t fnv1a64(const std::string& bytes);
std::string fingerprint_text(std::uint64_t fingerprint);  // "fnv1a:0123456789abcdef"

}  // namespace specontext
