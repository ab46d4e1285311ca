// specontext bench: decode-step timing at given request counts and context depths, llama-bench
// style (median and spread over repetitions, tokens/s, achieved HBM GB/s and % of the HBM
// roofline), with random weights at a model's real shape and random KV up to each depth.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/integer_list.hpp"
#include "engine/device_info.hpp"
#include "engine/model_config.hpp"
#include "sim/config_error.hpp"
#include "sim/hardware.hpp"
#include "sim/scenario_loader.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#endif

namespace specontext::cli {
namespace {

struct BenchFlags {
  std::string model, hw = "h200", requests = "1,4,16,32", depths = "2048,16384,32768";
  int steps = 16, reps = 5, warmup = 3;
  std::uint64_t seed = 1;
  bool random_weights = false, json = false, no_graph = false;
};

struct Point {
  long long requests = 0, depth = 0;
  bool fits = true;
  std::string reason;
  std::vector<double> ms_per_step;  // one per repetition
  double median_ms = 0, min_ms = 0, max_ms = 0, bytes_per_step = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#if defined(SPECONTEXT_HAVE_CUDA)
Point measure(const ModelConfig& config, const BenchFlags& f, long long R, long long depth) {
  Point p;
  p.requests = R;
  p.depth = depth;
  CudaBackendOptions o;
  o.max_requests = static_cast<int>(R);
  o.max_context = depth + f.warmup + static_cast<long long>(f.steps) * f.reps + 1;
  o.cuda_graph = !f.no_graph;
  o.prefill_chunk = 1;  // no prefill here: the KV cache is filled with random values
  std::unique_ptr<CudaBackend> b;
  try {
    b = std::make_unique<CudaBackend>(config, f.seed, o);
  } catch (const ConfigError& e) {
    p.fits = false;
    p.reason = e.what();
    return p;
  }
  std::vector<int> requests(static_cast<std::size_t>(R)), tokens(static_cast<std::size_t>(R), 1);
  for (long long r = 0; r < R; ++r) {
    requests[static_cast<std::size_t>(r)] = static_cast<int>(r);
    b->fill_random_context(static_cast<int>(r), depth, f.seed + static_cast<std::uint64_t>(r));
  }
  std::int64_t step = 0;
  for (int w = 0; w < f.warmup; ++w) tokens = b->decode_sample(requests, tokens, {}, step++);
  for (int rep = 0; rep < f.reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < f.steps; ++s) tokens = b->decode_sample(requests, tokens, {}, step++);  // each returns its tokens: synchronised
    p.ms_per_step.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / f.steps);
  }
  // Bytes a step must move at least: the streamed weights once, and K and V of every cached
  // token of every request (at the mean depth of the timed steps).
  const double mean_depth = static_cast<double>(depth + f.warmup) + 0.5 * f.steps * f.reps;
  p.bytes_per_step = b->streamed_weight_bytes() + static_cast<double>(R) * mean_depth * b->kv_bytes_per_token();
  p.median_ms = median(p.ms_per_step);
  p.min_ms = *std::min_element(p.ms_per_step.begin(), p.ms_per_step.end());
  p.max_ms = *std::max_element(p.ms_per_step.begin(), p.ms_per_step.end());
  return p;
}
#endif

void run(const BenchFlags& f) {
#if !defined(SPECONTEXT_HAVE_CUDA)
  (void)f;
  throw ConfigError("bench", "", "this build has no CUDA (no nvcc at configure time)");
#else
  if (!f.random_weights) throw ConfigError("--random-weights", "", "bench runs on random weights at the model's shape; pass --random-weights");
  if (f.steps <= 0 || f.reps <= 0 || f.warmup < 0) throw ConfigError("--steps/--reps", "", "must be positive");
  const ModelConfig config = load_engine_config(resolve_config(f.model, "models"));
  const Hardware hw = load_hardware(resolve_config(f.hw, "hardware"));
  const DeviceReport dev = query_devices();
  if (dev.devices.empty()) throw ConfigError("bench", "", "no CUDA device: " + dev.error);
  const double peak = hw.hbm_bandwidth_Bps;
  std::vector<Point> points;
  for (long long R : parse_integer_list(f.requests, "--requests", 1, 1 << 20))
    for (long long depth : parse_integer_list(f.depths, "--depth", 1, 0x7ffffffe)) {
      std::cerr << "[bench] R=" << R << " depth=" << depth << "\n";
      points.push_back(measure(config, f, R, depth));
    }
  const auto& d = dev.devices[0];
  if (f.json) {
    nlohmann::json pts = nlohmann::json::array();
    for (const auto& p : points) {
      nlohmann::json j = {{"requests", p.requests}, {"depth", p.depth}, {"fits", p.fits}};
      if (!p.fits) {
        j["reason"] = p.reason;
      } else {
        j.update({{"median_ms", p.median_ms}, {"min_ms", p.min_ms}, {"max_ms", p.max_ms}, {"ms_per_rep", p.ms_per_step},
                  {"tokens_per_s", p.requests / (p.median_ms / 1e3)}, {"bytes_per_step", p.bytes_per_step},
                  {"hbm_gbps", p.bytes_per_step / (p.median_ms / 1e3) / 1e9},
                  {"roofline_ms", p.bytes_per_step / peak * 1e3},
                  {"roofline_pct", 100.0 * (p.bytes_per_step / peak) / (p.median_ms / 1e3)}});
      }
      pts.push_back(j);
    }
    std::cout << nlohmann::json{{"gpu", d.name}, {"driver_version", dev.driver_version}, {"driver_release", dev.driver_release}, {"cuda_runtime_version", dev.runtime_version},
                                {"model", config.origin}, {"hbm_peak_Bps", peak}, {"hbm_peak_source", hw.origin},
                                {"steps", f.steps}, {"reps", f.reps}, {"cuda_graph", !f.no_graph}, {"points", pts}}
                     .dump(2)
              << "\n";
    return;
  }
  std::cout << d.name << ", driver " << dev.driver_release << " (CUDA " << dev.driver_version << "), CUDA runtime " << dev.runtime_version << "; " << config.origin
            << "; roofline at " << fixed(peak / 1e12, 2) << " TB/s; " << f.reps << " reps x " << f.steps << " steps\n\n"
            << "|   R |  depth | ms/step (median, min-max) | tokens/s | HBM GB/s | % roofline |\n"
            << "|----:|-------:|--------------------------:|---------:|---------:|-----------:|\n";
  for (const auto& p : points) {
    std::cout << "| " << p.requests << " | " << p.depth << " | ";
    if (!p.fits) {
      std::cout << "does not fit | | | |\n";
      continue;
    }
    std::cout << fixed(p.median_ms, 3) << " (" << fixed(p.min_ms, 3) << "-" << fixed(p.max_ms, 3) << ") | "
              << fixed(p.requests / (p.median_ms / 1e3), 1) << " | " << fixed(p.bytes_per_step / (p.median_ms / 1e3) / 1e9, 0) << " | "
              << fixed(100.0 * (p.bytes_per_step / peak) / (p.median_ms / 1e3), 1) << " |\n";
  }
#endif
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "time CUDA decode steps at request counts x context depths (random weights and KV)");
  cmd->add_option("--model,--model-config", f->model, "a config.json (a name in configs/models/, a path, or a checkpoint folder)")->required();
  cmd->add_flag("--random-weights", f->random_weights, "random bf16 weights at the config's shape (required)");
  cmd->add_option("--requests", f->requests, "comma-separated request counts")->capture_default_str();
  cmd->add_option("--depth", f->depths, "comma-separated context depths")->capture_default_str();
  cmd->add_option("--steps", f->steps, "decode steps per repetition")->capture_default_str();
  cmd->add_option("--reps", f->reps, "repetitions (median and min-max over them)")->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "untimed steps first (graph capture, clocks)")->capture_default_str();
  cmd->add_option("--hw", f->hw, "hardware config whose HBM bandwidth is the roofline")->capture_default_str();
  cmd->add_option("--seed", f->seed, "random weights' and KV's seed")->capture_default_str();
  cmd->add_flag("--no-graph", f->no_graph, "launch kernel by kernel instead of replaying a CUDA graph");
  cmd->add_flag("--json", f->json, "print JSON");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
