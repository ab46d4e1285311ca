// The calibration against the engine (sim/calibration.hpp): the simulator's description of the
// engine (a fixed placement, prefetch groups, elastic synchronous loads), the measurements file, the
// split, and the fit on a grid the simulator itself measured under known hardware parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>

#include "sim/calibration.hpp"
#include "sim/json_fields.hpp"
#include "sim/least_squares.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/simulator.hpp"
#include "tests/expect_config_error.hpp"
#include "tests/scenario_fixture.hpp"
#include "tests/synthetic_calibration_grid.hpp"
#include "tests/temp_dir.hpp"

namespace specontext {
namespace {

using testing::expect_config_error_naming;
using testing::scenario;

// ---- the simulator's description of the engine ----

TEST(Calibration, AFixedPlacementOverridesTheMemoryModel) {
  Scenario sc = scenario("specontext", "h200", "llama-3.1-8b", 8192, 1, 32);
  const auto sys = make_system("specontext");
  ASSERT_EQ(decode_step(sc, *sys, 8192).gpu_layers, 32);  // the memory model keeps everything on the GPU here
  sc.offloaded_layers = 6;
  const StepSample s = decode_step(sc, *sys, 8192);
  EXPECT_EQ(s.gpu_layers, 26);
  // Elastic loading of the 6 host layers: R x KV heads x ceil(0.2 B) rows x 512 B each.
  EXPECT_NEAR(s.h2d_bytes, 6.0 * 32 * 8 * std::ceil(0.2 * 2048) * 512, 1.0);
  // The placement survives simulate() as well: every sampled step has 26 GPU layers.
  sc.workload.output = 64;
  for (const StepSample& x : simulate(sc, *sys).samples) EXPECT_EQ(x.gpu_layers, 26);
}

TEST(Calibration, PrefetchGroupsMoveTheSameBytesInLargerRows) {
  Scenario sc = scenario("specontext", "h200", "llama-3.1-8b", 16384, 1, 32);
  sc.offloaded_layers = 8;
  const auto sys = make_system("specontext");
  const StepSample one = decode_step(sc, *sys, 16384);
  sc.system_params["prefetch_group_layers"] = 4;
  const StepSample four = decode_step(sc, *sys, 16384);
  EXPECT_NEAR(four.h2d_bytes, one.h2d_bytes, 1.0);
  // 2 KiB rows reach 92% of the pinned rate, 512 B ones about 63% (interpolated): a faster step.
  EXPECT_LT(four.step_s, one.step_s);
}

TEST(Calibration, ElasticSyncLoadsMoveOnlyTheChangedRows) {
  Scenario sc = scenario("specontext", "h200", "llama-3.1-8b", 16384, 1, 8, 2048, "c1");
  sc.offloaded_layers = 4;
  const auto sys = make_system("specontext");
  EXPECT_NEAR(decode_step(sc, *sys, 16384).h2d_bytes, 4.0 * 8 * 8 * 2048 * 512, 1.0);  // the paper's c1: all B rows
  sc.system_params["elastic_sync_loads"] = 1;
  EXPECT_NEAR(decode_step(sc, *sys, 16384).h2d_bytes, 4.0 * 8 * 8 * std::ceil(0.2 * 2048) * 512, 1.0);
}

// ---- the measurements file ----

Measurement point(const std::string& system, long long R, long long S, const std::string& components = "", long long B = 0,
                  long long offloaded = 0) {
  return testing::calibration_point(system, R, S, components, B, offloaded);
}

const std::string kHeader = "gpu,driver,cuda,date,system,components,model,draft,requests,depth,budget,overlap,offloaded_layers,prefetch,steps,reps,median_ms,min_ms,max_ms\n";
const std::string kDense = "NVIDIA H200,580.1,13.0,2026-12-10,full,,llama-3.1-8b,,4,2048,,,0,,6,3,5.0,4.9,5.1\n";
const std::string kSparse = "NVIDIA H200,580.1,13.0,2026-12-10,specontext,\"c1,c2\",llama-3.1-8b,eagle3-llama-3.1-8b,32,16384,2048,0.8,4,async,6,3,9.1,9.0,9.2\n";

TEST(Calibration, TheWriterAndTheReaderAgree) {
  std::vector<Measurement> pts = {point("full", 4, 2048), point("specontext", 32, 16384, "c1,c2", 2048, 4), point("specontext", 8, 8192, "c1", 1024, 8)};
  pts[0].median_ms = 5.25;
  pts[0].min_ms = 5.0;
  pts[0].max_ms = 5.5;
  const Measurements back = parse_measurements(measurements_csv(pts), "grid.csv");
  ASSERT_EQ(back.points.size(), 3u);
  EXPECT_EQ(back.points[0].line, 2);
  EXPECT_DOUBLE_EQ(back.points[0].median_ms, 5.25);
  EXPECT_EQ(back.points[1].components, "c1,c2");  // quoted on the way out
  EXPECT_EQ(back.points[1].offloaded_layers, 4);
  EXPECT_EQ(back.points[2].prefetch, "sync");
  EXPECT_DOUBLE_EQ(back.points[2].overlap, 0.8);
  // Columns may come in any order.
  const Measurements reordered = parse_measurements(
      "median_ms,min_ms,max_ms,gpu,driver,cuda,date,system,components,model,draft,requests,depth,budget,overlap,offloaded_layers,prefetch,steps,reps\n"
      "5.0,4.9,5.1,NVIDIA H200,580.1,13.0,2026-12-10,full,,llama-3.1-8b,,4,2048,,,0,,6,3\n",
      "r.csv");
  EXPECT_EQ(reordered.points[0].requests, 4);
  EXPECT_DOUBLE_EQ(reordered.points[0].median_ms, 5.0);
}

TEST(Calibration, BadMeasurementsNameTheFileLineAndColumn) {
  auto parse = [](const std::string& text) { return [text] { parse_measurements(text, "grid.csv"); }; };
  expect_config_error_naming(parse(""), {"grid.csv", "empty"});
  expect_config_error_naming(parse(kHeader), {"grid.csv", "no measured points"});
  expect_config_error_naming(parse("gpu,driver\n"), {"grid.csv:1", "field 'cuda'", "missing column"});
  std::string renamed = kHeader;
  renamed.replace(renamed.find("median_ms"), 9, "median");
  expect_config_error_naming(parse(renamed + kDense), {"grid.csv:1", "field 'median'", "unknown column", "column 17"});
  std::string bad = kDense;
  bad.replace(bad.find("5.0,"), 3, "abc");
  expect_config_error_naming(parse(kHeader + kSparse + bad), {"grid.csv:3", "field 'median_ms'", "'abc'", "column 17"});
  std::string unquoted = kSparse;
  unquoted.replace(unquoted.find("\"c1,c2\""), 7, "c1,c2");
  expect_config_error_naming(parse(kHeader + unquoted), {"grid.csv:2", "20 fields", "19"});
  std::string sync = kSparse;
  sync.replace(sync.find("async"), 5, "sync");
  expect_config_error_naming(parse(kHeader + sync), {"grid.csv:2", "field 'prefetch'", "contradicts", "column 14"});
  std::string system = kDense;
  system.replace(system.find("full"), 4, "vllm");
  expect_config_error_naming(parse(kHeader + system), {"grid.csv:2", "field 'system'", "vllm"});
  std::string layers = kDense;
  layers.replace(layers.find(",0,,"), 4, ",2,,");
  expect_config_error_naming(parse(kHeader + layers), {"grid.csv:2", "field 'offloaded_layers'"});
  std::string gpu = kDense;
  gpu.replace(0, 11, "NVIDIA A100");
  expect_config_error_naming(parse(kHeader + kDense + gpu), {"grid.csv:3", "field 'gpu'", "line 2", "one machine"});
  expect_config_error_naming(parse(kHeader + "\"NVIDIA H200,580.1\n"), {"grid.csv:2", "not closed"});
  expect_config_error_naming([] { load_measurements("/nonexistent/grid.csv"); }, {"/nonexistent/grid.csv", "cannot open"});
  // Beyond the file's syntax: the configs the point names and its placement.
  std::string many = kSparse;
  many.replace(many.find(",4,async"), 8, ",40,async");
  const Measurements m = parse_measurements(kHeader + many, "grid.csv");
  expect_config_error_naming([&] { evaluate(m, {0}, "h200", load_hardware(resolve_config("h200", "hardware"))); },
                             {"grid.csv:2", "field 'offloaded_layers'", "32 layers"});
  std::string model = kDense;
  model.replace(model.find("llama-3.1-8b"), 12, "no-such-model");
  const Measurements n = parse_measurements(kHeader + model, "grid.csv");
  expect_config_error_naming([&] { evaluate(n, {0}, "h200", load_hardware(resolve_config("h200", "hardware"))); },
                             {"grid.csv:2", "no-such-model"});
}

// ---- the split ----

std::set<std::string> identities(const std::vector<Measurement>& pts, const std::vector<std::size_t>& which) {
  std::set<std::string> out;
  for (std::size_t i : which) {
    const Measurement& p = pts[i];
    out.insert(p.system + p.components + std::to_string(p.requests) + "/" + std::to_string(p.depth) + "/" + std::to_string(p.budget) + "/" +
               std::to_string(p.offloaded_layers));
  }
  return out;
}

TEST(Calibration, TheSplitIsDeterministicAndHoldsOutAThird) {
  std::vector<Measurement> pts = testing::calibration_grid();
  pts.resize(60);
  const Split a = split_points(pts), b = split_points(pts);
  EXPECT_EQ(a.heldout, b.heldout);
  EXPECT_EQ(a.heldout.size(), 20u);
  EXPECT_EQ(a.fit.size(), 40u);
  std::set<std::size_t> all(a.fit.begin(), a.fit.end());
  all.insert(a.heldout.begin(), a.heldout.end());
  EXPECT_EQ(all.size(), 60u);
  // Spread over the grid: dense and sparse, and every placement kind, on both sides.
  std::set<std::string> kinds;
  for (std::size_t i : a.heldout) kinds.insert(pts[i].system + pts[i].components);
  EXPECT_GE(kinds.size(), 3u);
  // A file listing the same grid in another order holds out the same points (lines renumbered too).
  std::vector<Measurement> reversed(pts.rbegin(), pts.rend());
  for (std::size_t i = 0; i < reversed.size(); ++i) reversed[i].line = static_cast<int>(i) + 2;
  const Split r = split_points(reversed);
  EXPECT_EQ(identities(reversed, r.heldout), identities(pts, a.heldout));
  EXPECT_EQ(identities(pts, a.heldout).size(), 20u);
}

// ---- the fit ----

struct SyntheticGrid {
  Hardware truth = testing::synthetic_truth();
  Measurements m = parse_measurements(testing::synthetic_calibration_csv(truth), "synthetic.csv");
};

const FittedParameter& parameter(const FitResult& f, const std::string& field) {
  for (const auto& p : f.parameters)
    if (p.field == field) return p;
  throw std::runtime_error("no fitted parameter " + field);
}

TEST(Calibration, TheFitRecoversKnownParametersAndPredictsTheHeldOutPoints) {
  const SyntheticGrid g;
  ASSERT_GE(g.m.points.size(), 60u);
  const Split split = split_points(g.m.points);
  ASSERT_GE(split.heldout.size(), kMinHeldoutPoints);
  const FitResult fit = fit_hardware(g.m, split.fit, "h200");
  EXPECT_TRUE(fit.converged);
  const Hardware prior = load_hardware(resolve_config("h200", "hardware"));
  EXPECT_NEAR(parameter(fit, "hbm_efficiency").value, 0.80, 0.80 * 0.005);
  EXPECT_NEAR(parameter(fit, "kernel_gap_s").value, 3e-6, 3e-6 * 0.02);
  EXPECT_NEAR(parameter(fit, "h2d_bandwidth_Bps").value, prior.h2d_bandwidth_Bps * 0.85, prior.h2d_bandwidth_Bps * 0.85 * 0.005);
  EXPECT_NEAR(parameter(fit, "gather_gpu_slowdown").value, 0.15, 0.15 * 0.02);
  EXPECT_NEAR(parameter(fit, "hbm_gather_efficiency").value, 0.65, 0.65 * 0.01);
  for (const char* f : {"hbm_efficiency", "kernel_gap_s", "h2d_bandwidth_Bps", "gather_gpu_slowdown", "hbm_gather_efficiency"}) {
    EXPECT_TRUE(parameter(fit, f).constrained) << f;
    EXPECT_FALSE(parameter(fit, f).at_bound) << f;
  }
  // Decode steps at R <= 32 are memory-bound and the host runs ahead of the GPU: the points cannot
  // see these two, which stay as the hardware file has them.
  EXPECT_FALSE(parameter(fit, "compute_efficiency").constrained);
  EXPECT_DOUBLE_EQ(parameter(fit, "compute_efficiency").value, prior.compute_efficiency);
  EXPECT_FALSE(parameter(fit, "kernel_launch_overhead_s").constrained);
  EXPECT_DOUBLE_EQ(parameter(fit, "kernel_launch_overhead_s").value, prior.kernel_launch_overhead_s);
  EXPECT_LT(summarize(fit.fit_errors).max_abs_err_pct, 0.2);

  // The calibrated file: the prior's JSON with the fitted fields, their sources naming the fit.
  testing::TempDir dir;
  const auto file = dir.path() / "h200.calibrated.json";
  const nlohmann::json j = calibrated_hardware_json(read_json_file(resolve_config("h200", "hardware")), fit, g.m, "2026-12-10");
  std::ofstream(file) << j.dump(2);
  const std::string source = j.at("hbm_efficiency").at("source");
  EXPECT_NE(source.find("calibrated: fitted to " + std::to_string(split.fit.size()) + " points of synthetic.csv by specontext calibrate (2026-12-10"),
            std::string::npos)
      << source;
  EXPECT_NE(j.at("compute_efficiency").at("source").get<std::string>().find("not constrained"), std::string::npos);
  EXPECT_EQ(j.at("sm_count"), read_json_file(resolve_config("h200", "hardware")).at("sm_count"));
  const Hardware back = load_hardware(file);  // a valid hardware file
  EXPECT_NEAR(back.hbm_gather_efficiency, 0.65, 0.0065);
  EXPECT_EQ(back.gather_row_efficiency, prior.gather_row_efficiency) << "the measured curve is not fitted";

  // The check: the held-out points under the calibrated file.
  const CheckReport r = check_calibration(g.m, file);
  EXPECT_TRUE(r.fitted_to_these);
  EXPECT_EQ(r.summary.points, split.heldout.size());
  EXPECT_LT(r.summary.max_abs_err_pct, 0.2);
  EXPECT_TRUE(r.targets_met);
  const nlohmann::json out = to_json(r, g.m);
  for (const char* key : {"median_abs_err_pct", "max_abs_err_pct", "heldout_points", "points", "targets_met", "fitted_to_these_measurements"})
    EXPECT_TRUE(out.contains(key)) << key;
  EXPECT_EQ(out.at("heldout_points").get<std::size_t>(), split.heldout.size());
  ASSERT_EQ(out.at("points").size(), split.heldout.size());
  for (const char* key : {"line", "system", "requests", "depth", "offloaded_layers", "measured_ms", "predicted_ms", "err_pct"})
    EXPECT_TRUE(out.at("points")[0].contains(key)) << key;

  // Against the uncalibrated file the same points miss, and the check says it was not fitted to them.
  const CheckReport prior_check = check_calibration(g.m, resolve_config("h200", "hardware"));
  EXPECT_FALSE(prior_check.fitted_to_these);
  EXPECT_GT(prior_check.summary.max_abs_err_pct, 5.0);
}

// With a per-row floor curve in the hardware file, the part of it the engine's gathers pay is fitted
// too: the synchronous loads (512 B rows from buffers of 1-17 GB) are the points that see it, where
// the floor binds (below it a gather is bound by bytes and any smaller factor fits as well).
TEST(Calibration, TheFitRecoversTheGatherFloorScale) {
  testing::TempDir dir;
  nlohmann::json file = read_json_file(resolve_config("h200", "hardware"));
  const double gib = 1024.0 * 1024 * 1024;
  file["gather_row_seconds_by_footprint"] = {{"value", {{2 * gib, 10e-9}, {8 * gib, 20e-9}, {32 * gib, 30e-9}}}, {"source", "test floor"}};
  const std::string prior_path = (dir.path() / "h200_floor.json").string();
  std::ofstream(prior_path) << file.dump(2);

  Hardware truth = testing::synthetic_truth();
  truth.gather_row_seconds_by_footprint = load_hardware(prior_path).gather_row_seconds_by_footprint;
  truth.gather_row_floor_scale = 1.4;  // 14-42 ns a row past 2 GiB: the R = 32 loads are bound by rows, not bytes
  std::vector<Measurement> pts = testing::calibration_grid();
  for (Measurement& p : pts) p.median_ms = p.min_ms = p.max_ms = PointModel(p, prior_path, "synthetic").step_ms(truth);
  const Measurements m = parse_measurements(measurements_csv(pts), "synthetic_floor.csv");

  const FitResult fit = fit_hardware(m, split_points(m.points).fit, prior_path);
  EXPECT_TRUE(fit.converged);
  EXPECT_TRUE(parameter(fit, "gather_row_floor_scale").constrained);
  EXPECT_NEAR(parameter(fit, "gather_row_floor_scale").value, 1.4, 1.4 * 0.01);
  EXPECT_NEAR(parameter(fit, "h2d_bandwidth_Bps").value, truth.h2d_bandwidth_Bps, truth.h2d_bandwidth_Bps * 0.01);
  EXPECT_LT(summarize(fit.fit_errors).max_abs_err_pct, 0.2);

  // Without a curve the factor scales nothing: the points cannot see it and it stays at 1.
  file.erase("gather_row_seconds_by_footprint");
  const std::string plain_path = (dir.path() / "h200_plain.json").string();
  std::ofstream(plain_path) << file.dump(2);
  const FitResult plain = fit_hardware(m, split_points(m.points).fit, plain_path);
  EXPECT_FALSE(parameter(plain, "gather_row_floor_scale").constrained);
  EXPECT_DOUBLE_EQ(parameter(plain, "gather_row_floor_scale").value, 1.0);
}

TEST(Calibration, PointModelsPredictWhatTheSimulatorDoes) {
  // The cached step graph scheduled under another machine equals the simulator's own step there.
  const Measurement p = point("specontext", 32, 24576, "c1,c2", 2048, 8);
  const PointModel model(p, "h200", "x");
  Scenario sc = model.scenario();
  sc.hw = load_hardware(resolve_config("a100-80g", "hardware"));
  EXPECT_DOUBLE_EQ(model.step_ms(sc.hw), decode_step(sc, *make_system("specontext"), 24576).step_s * 1e3);
  EXPECT_EQ(sc.offloaded_layers.value_or(-1), 8);
  EXPECT_EQ(sc.system_params.at("host_overhead_per_layer_s").at("value"), 0);
}

TEST(Calibration, LevenbergMarquardtStaysInItsBox) {
  // y = a exp(b t) sampled without noise: the minimum (a, b) = (2, -0.5) lies inside the box ...
  LeastSquaresProblem p;
  p.residuals = [](const Eigen::VectorXd& x) {
    Eigen::VectorXd r(8);
    for (int i = 0; i < 8; ++i) r[i] = x[0] * std::exp(x[1] * i) - 2.0 * std::exp(-0.5 * i);
    return r;
  };
  p.start = Eigen::Vector2d(1.0, 0.0);
  p.lower = Eigen::Vector2d(0.1, -2.0);
  p.upper = Eigen::Vector2d(10.0, 2.0);
  LeastSquaresResult r = levenberg_marquardt(p);
  EXPECT_TRUE(r.converged);
  EXPECT_NEAR(r.x[0], 2.0, 1e-6);
  EXPECT_NEAR(r.x[1], -0.5, 1e-6);
  // ... and outside it the solution sits on the bound.
  p.upper[0] = 1.5;
  r = levenberg_marquardt(p);
  EXPECT_DOUBLE_EQ(r.x[0], 1.5);
  EXPECT_GT(r.x[1], -0.5);  // b compensates: a slower decay
}

}  // namespace
}  // namespace specontext
