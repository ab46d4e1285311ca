// Fitting the simulator's hardware parameters to the engine's measured decode steps, and checking
// the fit on the points it did not see (sim/calibration.hpp).
#include "sim/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <memory>
#include <tuple>

#include "sim/config_error.hpp"
#include "sim/json_fields.hpp"
#include "sim/least_squares.hpp"
#include "sim/scenario_loader.hpp"

namespace specontext {
namespace {

std::string where(const Measurements& m, const Measurement& p) { return m.origin + ":" + std::to_string(p.line); }

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// What the fit may change, each searched in log space within its bounds (absolute, or relative to the
// prior for a rate measured elsewhere). Efficiencies stay fractions; the kernel overheads stay between
// 10 ns and the tens of microseconds no GPU API takes; the host link's rate may move by the factor
// between the pinned copy it was measured with and the engine's gathers. The gather curve stays as
// measured: the synchronous loads (512 B rows) are the only points that see its 512 B value, and the
// link's rate already scales them, so a fitted curve point would only trade against the rate.
struct ParameterSpec {
  const char* name;  // the hardware field
  double (*get)(const Hardware&);
  void (*set)(Hardware&, double);
  double lower, upper;
  bool relative;  // bounds are multiples of the prior
};

#define SPECONTEXT_FIELD(f) [](const Hardware& hw) { return hw.f; }, [](Hardware& hw, double v) { hw.f = v; }
const ParameterSpec kParameters[] = {
    {"hbm_efficiency", SPECONTEXT_FIELD(hbm_efficiency), 0.3, 1.0, false},
    {"compute_efficiency", SPECONTEXT_FIELD(compute_efficiency), 0.1, 1.0, false},
    {"kernel_gap_s", SPECONTEXT_FIELD(kernel_gap_s), 1e-8, 3e-5, false},
    {"kernel_launch_overhead_s", SPECONTEXT_FIELD(kernel_launch_overhead_s), 1e-8, 1e-4, false},
    {"h2d_bandwidth_Bps", SPECONTEXT_FIELD(h2d_bandwidth_Bps), 0.25, 2.0, true},
    {"gather_gpu_slowdown", SPECONTEXT_FIELD(gather_gpu_slowdown), 1e-3, 1.0, false},
    {"hbm_gather_efficiency", SPECONTEXT_FIELD(hbm_gather_efficiency), 0.05, 1.0, false},
    {"gather_row_floor_scale", SPECONTEXT_FIELD(gather_row_floor_scale), 0.05, 4.0, false},
};
#undef SPECONTEXT_FIELD
constexpr int kParameterCount = static_cast<int>(std::size(kParameters));

// A weak pull of each log-parameter towards its prior: negligible beside the data for a parameter
// the points determine, it keeps one they do not determine where the hardware file put it.
constexpr double kPriorWeight = 1e-3;

Hardware with_parameters(Hardware hw, const Eigen::VectorXd& log_values) {
  for (int i = 0; i < kParameterCount; ++i) kParameters[i].set(hw, std::exp(log_values[i]));
  return hw;
}

std::vector<PointModel> point_models(const Measurements& m, const std::vector<std::size_t>& which, const std::string& hardware) {
  std::vector<PointModel> out;
  out.reserve(which.size());
  for (std::size_t i : which) out.emplace_back(m.points.at(i), hardware, where(m, m.points.at(i)));
  return out;
}

// Relative errors of the points, then the prior rows.
Eigen::VectorXd residuals(const std::vector<PointModel>& models, const std::vector<double>& measured, const Hardware& prior,
                          const Eigen::VectorXd& log_prior, const Eigen::VectorXd& log_values) {
  const Hardware hw = with_parameters(prior, log_values);
  Eigen::VectorXd r(static_cast<Eigen::Index>(models.size()) + kParameterCount);
  for (std::size_t j = 0; j < models.size(); ++j) r[static_cast<Eigen::Index>(j)] = models[j].step_ms(hw) / measured[j] - 1.0;
  r.tail(kParameterCount) = kPriorWeight * (log_values - log_prior);
  return r;
}

}  // namespace

Split split_points(const std::vector<Measurement>& points) {
  // (hash of the identity, line, index): the line only orders repeated measurements of one point.
  std::vector<std::tuple<std::uint64_t, int, std::size_t>> order;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const Measurement& p = points[i];
    const std::string identity = p.system + "|" + p.components + "|" + p.model + "|" + p.draft + "|" + std::to_string(p.requests) + "|" +
                                 std::to_string(p.depth) + "|" + std::to_string(p.budget) + "|" + fmt("%.6g", p.overlap) + "|" +
                                 std::to_string(p.offloaded_layers) + "|" + p.prefetch;
    order.emplace_back(fnv1a64(identity), p.line, i);
  }
  std::sort(order.begin(), order.end());
  Split s;
  for (std::size_t k = 0; k < order.size(); ++k) (k % 3 == 2 ? s.heldout : s.fit).push_back(std::get<2>(order[k]));
  std::sort(s.fit.begin(), s.fit.end());
  std::sort(s.heldout.begin(), s.heldout.end());
  return s;
}

nlohmann::json engine_system_params() {
  auto p = [](double v, const char* source) { return nlohmann::json{{"value", v}, {"source", source}}; };
  return {{"host_overhead_per_layer_s",
           p(0, "the engine replays one CUDA graph per decode step (bench's cuda_graph: true): no layer is dispatched from the host")},
          {"host_overhead_per_step_s",
           p(0, "the graph launch and the sampled tokens' copy back take microseconds; a fixed cost per step is absorbed by kernel_gap_s, "
                "which the fit scales over every kernel of the step")},
          {"prefetch_group_layers", p(4, "bench's default --prefetch-group 4 (bench_to_calibration_csv.py refuses files run with another)")},
          {"elastic_sync_loads",
           p(1, "the engine's synchronous loads (--sync-prefetch, c1) move only the rows the selection changed (engine/kv_offload.cuh)")}};
}

PointModel::PointModel(const Measurement& m, const std::string& hardware, const std::string& origin) {
  const bool sparse = m.system == "specontext";
  ScenarioSpec spec;
  spec.hardware = hardware;
  spec.model = m.model;
  spec.draft = m.draft;
  // The engine's dense decoding is FlashInfer-like: fused decode attention over KV kept on the GPU.
  spec.system = sparse ? "specontext" : "flashinfer";
  if (sparse) spec.components = m.components;
  spec.workload = {m.depth, 1, m.requests, sparse ? m.budget : 1};
  if (sparse) spec.overlap = m.overlap;
  try {
    sc_ = make_scenario(spec);
  } catch (const ConfigError& e) {
    throw ConfigError(origin, "", e.what());
  }
  sc_.system_params = engine_system_params();
  sc_.params_origin = "the engine as specontext bench runs it (sim/calibration.cpp)";
  if (sparse) {
    if (m.offloaded_layers > sc_.model.layers)
      throw ConfigError(origin, "offloaded_layers", std::to_string(m.offloaded_layers) + " exceeds the model's " + std::to_string(sc_.model.layers) + " layers");
    sc_.offloaded_layers = m.offloaded_layers;
  }
  auto step = std::make_shared<StepGraph>();
  make_system(spec.system)->build_decode_step(*step, sc_, m.depth);
  step_ = std::move(step);
}

double PointModel::step_ms(const Hardware& hw) const { return step_->schedule(hw).makespan * 1e3; }

nlohmann::json PointModel::chrome_trace(const Hardware& hw, const std::string& title) const {
  return specontext::chrome_trace(*step_, step_->schedule(hw), title);
}

ErrorSummary summarize(const std::vector<PointError>& errors) {
  ErrorSummary s;
  s.points = errors.size();
  if (errors.empty()) return s;
  std::vector<double> a;
  for (const auto& e : errors) a.push_back(std::abs(e.err_pct));
  std::sort(a.begin(), a.end());
  const std::size_t n = a.size();
  s.median_abs_err_pct = n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
  s.max_abs_err_pct = a.back();
  return s;
}

std::vector<PointError> evaluate(const Measurements& m, const std::vector<std::size_t>& which, const std::string& hardware, const Hardware& hw) {
  const std::vector<PointModel> models = point_models(m, which, hardware);
  std::vector<PointError> out;
  for (std::size_t j = 0; j < which.size(); ++j) {
    PointError e;
    e.index = which[j];
    e.measured_ms = m.points[which[j]].median_ms;
    e.predicted_ms = models[j].step_ms(hw);
    e.err_pct = 100.0 * (e.predicted_ms / e.measured_ms - 1.0);
    out.push_back(e);
  }
  return out;
}

FitResult fit_hardware(const Measurements& m, const std::vector<std::size_t>& fit, const std::string& hardware) {
  if (fit.size() < 2 * static_cast<std::size_t>(kParameterCount))
    throw ConfigError(m.origin, "", "the fit needs at least " + std::to_string(2 * kParameterCount) + " points, the split leaves " + std::to_string(fit.size()));
  const Hardware prior = load_hardware(resolve_config(hardware, "hardware"));
  const std::vector<PointModel> models = point_models(m, fit, hardware);
  std::vector<double> measured;
  for (std::size_t i : fit) measured.push_back(m.points[i].median_ms);

  Eigen::VectorXd log_prior(kParameterCount), lower(kParameterCount), upper(kParameterCount);
  for (int i = 0; i < kParameterCount; ++i) {
    const ParameterSpec& p = kParameters[i];
    const double v = p.get(prior);
    lower[i] = std::log(p.relative ? p.lower * v : p.lower);
    upper[i] = std::log(p.relative ? p.upper * v : p.upper);
    log_prior[i] = std::clamp(std::log(v), lower[i], upper[i]);
  }
  LeastSquaresProblem problem;
  problem.residuals = [&](const Eigen::VectorXd& x) { return residuals(models, measured, prior, log_prior, x); };
  problem.start = log_prior;
  problem.lower = lower;
  problem.upper = upper;
  problem.difference_step = 1e-4;
  const Eigen::Index n = static_cast<Eigen::Index>(models.size());
  auto sensitivities = [&](const Eigen::MatrixXd& J) {
    Eigen::VectorXd s(kParameterCount);
    for (int i = 0; i < kParameterCount; ++i) s[i] = J.col(i).head(n).norm() / std::sqrt(static_cast<double>(n));
    return s;
  };

  // Parameters the points hardly see at the prior are pinned there (a box of zero width), the rest
  // fitted. Fitting them too would let them drift along a direction the data barely constrains: the
  // host's launch cost at the start of a step trades against the GPU's gaps between kernels, both
  // nearly a constant per step, and then both come out wrong.
  const Eigen::VectorXd r0 = problem.residuals(log_prior);
  const Eigen::VectorXd s0 = sensitivities(numerical_jacobian(problem, log_prior, r0));
  for (int i = 0; i < kParameterCount; ++i)
    if (s0[i] < kMinSensitivity) problem.lower[i] = problem.upper[i] = log_prior[i];
  const LeastSquaresResult r = levenberg_marquardt(problem);
  const int iterations = r.iterations;
  // Sensitivities of every parameter at the solution, pinned ones included (the full box).
  LeastSquaresProblem full = problem;
  full.lower = lower;
  full.upper = upper;
  const Eigen::MatrixXd J = numerical_jacobian(full, r.x, r.residuals);
  const Eigen::VectorXd s = sensitivities(J);

  // A pinned parameter keeps the file's value exactly (its log may have been clamped into the box).
  Eigen::VectorXd x = r.x;
  for (int i = 0; i < kParameterCount; ++i)
    if (!(problem.lower[i] < problem.upper[i])) x[i] = std::log(kParameters[i].get(prior));
  FitResult out;
  out.hardware = with_parameters(prior, x);
  out.iterations = iterations;
  out.converged = r.converged;
  // 1-sigma uncertainties of the fitted log-parameters: sigma^2 (J'J)^-1 over the points' rows.
  std::vector<int> free;
  for (int i = 0; i < kParameterCount; ++i)
    if (problem.lower[i] < problem.upper[i]) free.push_back(i);
  Eigen::MatrixXd Jf(n, static_cast<Eigen::Index>(free.size()));
  for (std::size_t k = 0; k < free.size(); ++k) Jf.col(static_cast<Eigen::Index>(k)) = J.col(free[k]).head(n);
  const double dof = static_cast<double>(n) - static_cast<double>(free.size());
  const double sigma2 = dof > 0 ? r.residuals.head(n).squaredNorm() / dof : 0.0;
  const Eigen::MatrixXd JtJ = Jf.transpose().lazyProduct(Jf);
  const Eigen::MatrixXd cov = sigma2 * JtJ.ldlt().solve(Eigen::MatrixXd::Identity(JtJ.rows(), JtJ.cols()));
  for (int i = 0; i < kParameterCount; ++i) {
    const ParameterSpec& p = kParameters[i];
    FittedParameter f;
    f.field = p.name;
    f.prior = p.get(prior);
    f.value = std::exp(x[i]);
    f.lower = std::exp(lower[i]);
    f.upper = std::exp(upper[i]);
    f.sensitivity = s[i];
    f.constrained = problem.lower[i] < problem.upper[i];
    f.at_bound = f.constrained && (r.x[i] - lower[i] < 1e-9 || upper[i] - r.x[i] < 1e-9);
    const auto k = std::find(free.begin(), free.end(), i) - free.begin();
    if (f.constrained) {
      const double v = cov(k, k);  // not finite where J'J is singular: two parameters the points cannot tell apart
      f.rel_std_err = !std::isfinite(v) ? INFINITY : std::sqrt(std::max(0.0, v));
    }
    out.parameters.push_back(f);
  }
  for (std::size_t j = 0; j < fit.size(); ++j) {
    PointError e;
    e.index = fit[j];
    e.measured_ms = measured[j];
    e.predicted_ms = models[j].step_ms(out.hardware);
    e.err_pct = 100.0 * (e.predicted_ms / e.measured_ms - 1.0);
    out.fit_errors.push_back(e);
  }
  return out;
}

nlohmann::json calibrated_hardware_json(const nlohmann::json& original, const FitResult& fit, const Measurements& m, const std::string& date) {
  nlohmann::json j = original;
  const std::string how = "specontext calibrate, " + date + ", " + fingerprint_text(m.fingerprint);
  const std::string points = std::to_string(fit.fit_errors.size()) + " points of " + m.origin;
  auto old_source = [&](const std::string& field) {
    const nlohmann::json v = original.contains(field) ? original.at(field) : nlohmann::json();
    return v.is_object() && v.contains("source") && v.at("source").is_string() ? v.at("source").get<std::string>() : std::string();
  };
  for (const FittedParameter& p : fit.parameters) {
    std::string source;
    if (p.constrained) {
      const std::string sigma = std::isfinite(p.rel_std_err) ? "1-sigma " + fmt("%.2g", 100.0 * p.rel_std_err) + "%"
                                                               : "1-sigma unknown (the points do not separate it from another parameter)";
      source = "calibrated: fitted to " + points + " by specontext calibrate (" + date + ", " + fingerprint_text(m.fingerprint) + "); " + sigma +
               (p.at_bound ? "; AT ITS BOUND (the model lacks something the points show)" : "") +
               "; before: " + fmt("%.6g", p.prior);
      if (p.field == "h2d_bandwidth_Bps")
        source += " (the pinned copy); now the rate the engine's gathers reach, " + fmt("%.3g", p.value / p.prior) + " x that";
      source += "; sim/VALIDATION.md";
    } else {
      source = "not constrained by the " + points + " (a factor e moves their predictions " + fmt("%.2g", 100.0 * p.sensitivity) +
               "% RMS; " + how + "): kept";
    }
    j[p.field] = {{"value", p.value}, {"source", p.constrained ? source : source + ". " + old_source(p.field)}};
  }
  j["name"] = original.value("name", std::string()) + " (calibrated)";
  const std::string description = original.value("description", std::string());
  j["description"] = description + (description.empty() ? "" : ". ") + "Efficiency and overhead fields calibrated against the engine's decode steps (" + how +
                     "; sim/VALIDATION.md)";
  return j;
}

CheckReport check_calibration(const Measurements& m, const std::filesystem::path& calibrated, bool with_fit_points) {
  CheckReport r;
  r.calibrated = calibrated.string();
  const Hardware hw = load_hardware(calibrated);
  const Split split = split_points(m.points);
  r.heldout = evaluate(m, split.heldout, calibrated.string(), hw);
  if (with_fit_points) r.fit = evaluate(m, split.fit, calibrated.string(), hw);
  r.summary = summarize(r.heldout);
  const std::string token = fingerprint_text(m.fingerprint);
  for (const auto& [field, source] : hw.sources)
    if (source.find(token) != std::string::npos) r.fitted_to_these = true;
  r.targets_met = r.summary.points >= kMinHeldoutPoints && r.summary.median_abs_err_pct <= kTargetMedianAbsErrPct &&
                  r.summary.max_abs_err_pct <= kTargetMaxAbsErrPct;
  return r;
}

nlohmann::json to_json(const Measurements& m, const std::vector<PointError>& errors) {
  nlohmann::json points = nlohmann::json::array();
  for (const PointError& e : errors) {
    const Measurement& p = m.points[e.index];
    points.push_back({{"line", p.line}, {"system", p.system}, {"components", p.components}, {"requests", p.requests}, {"depth", p.depth},
                      {"budget", p.system == "full" ? nlohmann::json(nullptr) : nlohmann::json(p.budget)},
                      {"overlap", p.system == "full" ? nlohmann::json(nullptr) : nlohmann::json(p.overlap)},
                      {"offloaded_layers", p.offloaded_layers}, {"prefetch", p.prefetch}, {"measured_ms", e.measured_ms},
                      {"predicted_ms", e.predicted_ms}, {"err_pct", e.err_pct}});
  }
  return points;
}

nlohmann::json to_json(const CheckReport& r, const Measurements& m) {
  nlohmann::json j = {{"measurements", m.origin},
                      {"fingerprint", fingerprint_text(m.fingerprint)},
                      {"calibrated", r.calibrated},
                      {"fitted_to_these_measurements", r.fitted_to_these},
                      {"heldout_points", r.summary.points},
                      {"median_abs_err_pct", r.summary.median_abs_err_pct},
                      {"max_abs_err_pct", r.summary.max_abs_err_pct},
                      {"targets", {{"median_abs_err_pct", kTargetMedianAbsErrPct}, {"max_abs_err_pct", kTargetMaxAbsErrPct}, {"heldout_points", kMinHeldoutPoints}}},
                      {"targets_met", r.targets_met},
                      {"points", to_json(m, r.heldout)}};
  if (!r.fit.empty()) {
    const ErrorSummary f = summarize(r.fit);
    j["fit_points"] = {{"count", f.points}, {"median_abs_err_pct", f.median_abs_err_pct}, {"max_abs_err_pct", f.max_abs_err_pct}, {"points", to_json(m, r.fit)}};
  }
  return j;
}

}  // namespace specontext
