// specontext calibrate: the simulator's hardware parameters fitted to the engine's measured decode
// steps, and the fit checked on the measured points it did not see (sim/calibration.hpp,
// sim/VALIDATION.md).
//
//   specontext calibrate [--measurements CSV] [--hw h200] [--out FILE] [--json]
//       fits to the split's fit part, prints the parameters and the fit set's errors and writes the
//       hardware file with the fitted fields (default configs/hardware/<hw>.calibrated.json);
//   specontext calibrate --check [--measurements CSV] [--calibrated FILE] [--fit-points] [--json]
//       predicts the held-out part under the calibrated file: per-point errors and their summary
//       (JSON: median_abs_err_pct, max_abs_err_pct, heldout_points, points); --fit-points adds the
//       fit part's (JSON: fit_points); --trace-line N --trace-out F writes the predicted step of the
//       CSV's line N as a Chrome trace (bench/trace_side_by_side.py puts it beside a measured one).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "sim/calibration.hpp"
#include "sim/config_error.hpp"
#include "sim/hardware.hpp"
#include "sim/json_fields.hpp"
#include "sim/scenario_loader.hpp"

#ifndef SPECONTEXT_SOURCE_DIR
#define SPECONTEXT_SOURCE_DIR "."
#endif

namespace specontext::cli {
namespace {

namespace fs = std::filesystem;

struct CalibrateFlags {
  std::string measurements = (fs::path(SPECONTEXT_SOURCE_DIR) / "bench" / "results" / "calibration" / "h200_grid.csv").string();
  std::string hw = "h200", out, calibrated, trace_out;
  int trace_line = 0;
  bool check = false, json = false, fit_points = false;
};

// How a file is named in the calibrated file's sources: relative to the source tree when inside it,
// so that the committed file does not carry one machine's absolute paths.
std::string label(const fs::path& file) {
  const fs::path rel = fs::absolute(file).lexically_normal().lexically_proximate(fs::absolute(SPECONTEXT_SOURCE_DIR).lexically_normal());
  return !rel.empty() && *rel.begin() != ".." ? rel.generic_string() : file.string();
}

std::string today_utc() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string sign_pct(double v) { return (v >= 0 ? "+" : "") + fixed(v, 2) + "%"; }

std::string point_cells(const Measurement& p) {
  const bool sparse = p.system == "specontext";
  return std::to_string(p.line) + " | " + p.system + (sparse ? " [" + p.components + "]" : "") + " | " + std::to_string(p.requests) + " | " +
         std::to_string(p.depth) + " | " + (sparse ? std::to_string(p.budget) : "") + " | " + std::to_string(p.offloaded_layers) + " | " + p.prefetch;
}

void print_points(const Measurements& m, const std::vector<PointError>& errors) {
  std::cout << "| line | system | R | S | B | offloaded | prefetch | measured ms | predicted ms | error |\n"
            << "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|\n";
  for (const PointError& e : errors)
    std::cout << "| " << point_cells(m.points[e.index]) << " | " << fixed(e.measured_ms, 3) << " | " << fixed(e.predicted_ms, 3) << " | "
              << sign_pct(e.err_pct) << " |\n";
}

fs::path default_calibrated(const std::string& hw) {
  const fs::path prior = resolve_config(hw, "hardware");
  return configs_dir() / "hardware" / (prior.stem().string() + ".calibrated.json");
}

void run_fit(const CalibrateFlags& f, const Measurements& m) {
  const Split split = split_points(m.points);
  const fs::path prior_path = resolve_config(f.hw, "hardware");
  const fs::path out = f.out.empty() ? default_calibrated(f.hw) : fs::path(f.out);
  const FitResult fit = fit_hardware(m, split.fit, f.hw);
  const ErrorSummary s = summarize(fit.fit_errors);
  const nlohmann::json calibrated = calibrated_hardware_json(read_json_file(prior_path), fit, m, today_utc());
  {
    std::ofstream file(out);
    if (!file) throw ConfigError(out.string(), "", "cannot write the calibrated hardware file (--out)");
    file << calibrated.dump(2) << "\n";
  }
  if (f.json) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : fit.parameters)
      params.push_back({{"field", p.field}, {"prior", p.prior}, {"value", p.value}, {"lower", p.lower}, {"upper", p.upper},
                        {"sensitivity", p.sensitivity}, {"constrained", p.constrained}, {"at_bound", p.at_bound}, {"rel_std_err", p.rel_std_err}});
    std::cout << nlohmann::json{{"measurements", m.origin}, {"fingerprint", fingerprint_text(m.fingerprint)}, {"hardware", prior_path.string()},
                                {"out", out.string()}, {"fit_points", s.points}, {"heldout_points", split.heldout.size()},
                                {"iterations", fit.iterations}, {"converged", fit.converged}, {"parameters", params},
                                {"median_abs_err_pct", s.median_abs_err_pct}, {"max_abs_err_pct", s.max_abs_err_pct},
                                {"points", to_json(m, fit.fit_errors)}}
                     .dump(2)
              << "\n";
    return;
  }
  const Measurement& first = m.points.front();
  std::cout << m.origin << " (" << fingerprint_text(m.fingerprint) << "): " << m.points.size() << " points on " << first.gpu << "; fitted to "
            << split.fit.size() << ", " << split.heldout.size() << " held out for `specontext calibrate --check`\n"
            << "prior: " << prior_path.string() << "; Levenberg-Marquardt, " << fit.iterations << " iterations"
            << (fit.converged ? "" : " (NOT converged)") << "\n\n"
            << "| parameter | prior | fitted | 1-sigma | sensitivity | |\n|---|---:|---:|---:|---:|---|\n";
  for (const auto& p : fit.parameters) {
    char prior[32], value[32];
    std::snprintf(prior, sizeof prior, "%.4g", p.prior);
    std::snprintf(value, sizeof value, "%.4g", p.value);
    std::cout << "| " << p.field << " | " << prior << " | " << value << " | " << (p.constrained ? fixed(100 * p.rel_std_err, 2) + "%" : "") << " | "
              << fixed(p.sensitivity, 4) << " | "
              << (p.constrained ? (p.at_bound ? "fitted, AT ITS BOUND" : "fitted") : "not constrained by the points: kept") << " |\n";
  }
  std::cout << "\nfit set, " << s.points << " points: median |error| " << fixed(s.median_abs_err_pct, 2) << "%, max " << fixed(s.max_abs_err_pct, 2)
            << "%\n\n";
  print_points(m, fit.fit_errors);
  std::cout << "\nwrote " << out.string() << "\n";
}

void write_predicted_trace(const CalibrateFlags& f, const Measurements& m, const fs::path& calibrated) {
  const auto it = std::find_if(m.points.begin(), m.points.end(), [&](const Measurement& p) { return p.line == f.trace_line; });
  if (it == m.points.end())
    throw ConfigError(m.origin, "--trace-line", "no measured point on line " + std::to_string(f.trace_line) + " (the header is line 1)");
  // The scenario on the calibrated file, as --check predicts the point.
  const PointModel model(*it, calibrated.string(), m.origin + ":" + std::to_string(it->line));
  const std::string title = "predicted with " + label(calibrated) + ": " + m.origin + ":" + std::to_string(it->line) + " (" + point_cells(*it) +
                            ", measured " + fixed(it->median_ms, 3) + " ms)";
  std::ofstream file(f.trace_out);
  if (!file) throw ConfigError(f.trace_out, "", "cannot write the trace (--trace-out)");
  file << model.chrome_trace(load_hardware(calibrated), title).dump() << "\n";
}

void run_check(const CalibrateFlags& f, const Measurements& m) {
  const fs::path calibrated = f.calibrated.empty() ? default_calibrated(f.hw) : fs::path(f.calibrated);
  if (!fs::exists(calibrated))
    throw ConfigError(calibrated.string(), "", "no such calibrated hardware file (--calibrated; `specontext calibrate` writes it)");
  if (!f.trace_out.empty()) write_predicted_trace(f, m, calibrated);
  const CheckReport r = check_calibration(m, calibrated, f.fit_points);
  if (!r.fitted_to_these)
    std::cerr << "specontext: warning: " << calibrated.string() << " was not calibrated from " << m.origin << " as it is now ("
              << fingerprint_text(m.fingerprint) << "): if it was fitted to another version of these points, the held-out ones may not be held out\n";
  if (f.json) {
    std::cout << to_json(r, m).dump(2) << "\n";
    return;
  }
  std::cout << "held-out points of " << m.origin << " predicted with " << calibrated.string() << "\n\n";
  print_points(m, r.heldout);
  const ErrorSummary& s = r.summary;
  std::cout << "\n" << s.points << " held-out points: median |error| " << fixed(s.median_abs_err_pct, 2) << "% (target <= "
            << fixed(kTargetMedianAbsErrPct, 0) << "%), max " << fixed(s.max_abs_err_pct, 2) << "% (target <= " << fixed(kTargetMaxAbsErrPct, 0)
            << "%); " << (r.targets_met ? "targets met" : "targets NOT met")
            << (s.points < kMinHeldoutPoints ? " (the targets ask for at least " + std::to_string(kMinHeldoutPoints) + " held-out points)" : "") << "\n";
  if (!f.fit_points) return;
  const ErrorSummary fs = summarize(r.fit);
  std::cout << "\nthe fit part, " << fs.points << " points: median |error| " << fixed(fs.median_abs_err_pct, 2) << "%, max "
            << fixed(fs.max_abs_err_pct, 2) << "%\n\n";
  print_points(m, r.fit);
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  auto f = std::make_shared<CalibrateFlags>();
  CLI::App* cmd = app.add_subcommand("calibrate", "fit the simulator's hardware parameters to the engine's measured decode steps, or check a fit");
  cmd->add_option("--measurements", f->measurements, "the measured points (CSV, sim/calibration.hpp)")->capture_default_str();
  cmd->add_option("--hw", f->hw, "the prior hardware config whose fields are fitted (a name in configs/hardware/ or a path)")->capture_default_str();
  CLI::Option* out = cmd->add_option("--out", f->out, "where the calibrated hardware file goes (default configs/hardware/<hw>.calibrated.json)");
  cmd->add_flag("--check", f->check, "predict the held-out points with --calibrated and report the errors instead of fitting");
  CLI::Option* calibrated = cmd->add_option("--calibrated", f->calibrated, "--check: the calibrated hardware file (default configs/hardware/<hw>.calibrated.json)");
  CLI::Option* fit_points = cmd->add_flag("--fit-points", f->fit_points, "--check: predict the fit part of the split too (every residual; the targets judge the held-out part)");
  CLI::Option* trace_line = cmd->add_option("--trace-line", f->trace_line, "--check: the CSV line whose predicted step --trace-out writes");
  CLI::Option* trace_out = cmd->add_option("--trace-out", f->trace_out, "--check: write that point's predicted step as a Chrome trace");
  cmd->add_flag("--json", f->json, "print JSON");
  cmd->callback([f, out, calibrated, fit_points, trace_line, trace_out]() {
    if (f->check && out->count() > 0) throw ConfigError("--out", "", "--check writes nothing; --calibrated names the file it checks");
    if (!f->check && calibrated->count() > 0) throw ConfigError("--calibrated", "", "only with --check (fitting writes --out)");
    if (!f->check && fit_points->count() > 0) throw ConfigError("--fit-points", "", "only with --check (fitting prints the fit part's errors)");
    if ((trace_line->count() > 0) != (trace_out->count() > 0)) throw ConfigError("--trace-line/--trace-out", "", "give both or neither");
    if (!f->check && trace_out->count() > 0) throw ConfigError("--trace-out", "", "only with --check (it predicts with --calibrated)");
    if (!fs::exists(f->measurements)) throw ConfigError(f->measurements, "", "no such measurements file (--measurements)");
    const Measurements m = load_measurements(f->measurements, label(f->measurements));
    if (f->check) run_check(*f, m);
    else run_fit(*f, m);
  });
}

}  // namespace specontext::cli
