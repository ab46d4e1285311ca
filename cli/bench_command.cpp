// specontext bench: decode-step timing at given request counts and context depths, llama-bench
// style (median and spread over repetitions, tokens/s, achieved HBM GB/s and % of the HBM
// roofline), with random weights at a model's real shape and random KV up to each depth.
//
// The SpeContext path: --policy specontext --budget B --dlm-config DRAFT.json (the retrieval head at
// the draft's shape, random weights) runs the head and top-B every step; since random weights choose
// nearly random sets, --overlap X replaces the choice (after the head ran) by a synthetic stream
// whose adjacent steps share exactly round(X B) positions (engine/synthetic_selection.hpp), and the
// report says so. --offload-layers N|auto puts the last N layers' KV in pinned host memory with
// elastic loading (auto: the simulator's memory model, sim/memory_model.hpp, at the point's final
// length and --gpu-mem or the device's memory); --sync-prefetch loads on the compute stream (c1)
// instead of the copy stream (c1+c2). Each point reports the H2D bytes its steps moved.
//
// --span FROM:TO validates the sampled method: it times the --depth points (within the span), then
// one true end-to-end run of every step from FROM to TO (no warm-up, one repetition), and compares the
// end-to-end time with the sum of the points' step times interpolated linearly over the span.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/integer_list.hpp"
#include "engine/device_info.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/model_config.hpp"
#include "engine/selection_policy.hpp"
#include "engine/step_profile.hpp"
#include "engine/synthetic_selection.hpp"
#include "cli/scenario_flags.hpp"
#include "sim/scenario.hpp"
#include "sim/config_error.hpp"
#include "sim/hardware.hpp"
#include "sim/scenario_loader.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#include "kernels/hbm_sweep.cuh"
#endif

namespace specontext::cli {
namespace {

struct BenchFlags {
  std::string model, hw = "auto", requests = "1,4,16,32", depths = "2048,16384,32768";
  int steps = 16, reps = 5, warmup = 3;
  std::uint64_t seed = 1;
  bool random_weights = false, json = false, no_graph = false, no_pdl = false, persistent = false;
  std::string policy = "full", dlm_config, offload = "0", gpu_mem, span, components;
  std::int64_t budget = 0;
  double overlap = -1;  // < 0: the head's own choice
  bool sync_prefetch = false;
  int prefetch_group = 4, gather_blocks = 32;
  std::string host_pages = "cuda";
  bool adaptive = false, breakdown = false;
  bool sweep = false;  // measure the device's read ceiling (kernels/hbm_sweep.cuh) before the points
};

// What the points share: the policy and, for specontext, the draft (random weights at its shape).
struct SparseSetup {
  SelectionPolicy policy = SelectionPolicy::Full;
  std::optional<Eagle3Draft> draft;
};

struct Point {
  long long requests = 0, depth = 0;
  bool fits = true;
  std::string reason;
  std::vector<double> ms_per_step;  // one per repetition
  double median_ms = 0, min_ms = 0, max_ms = 0, bytes_per_step = 0;
  int offloaded_layers = 0;
  std::string decode_kernel;  // "persistent" (R = 1), or "chain" and why
  double host_huge_page_bytes = 0;  // of the offloaded layers' host KV (--host-pages huge)
  double h2d_bytes_per_step = 0, achieved_overlap = -1, device_bytes_in_use = 0;
  StepProfile phases;  // --breakdown: summed over the timed steps
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#if defined(SPECONTEXT_HAVE_CUDA)
// Layers the engine's memory model offloads at `length` tokens (CR Alg. 1), for --offload-layers
// auto; --gpu-mem is the model's Mem_GPU there.
int planned_offload(const ModelConfig& config, const BenchFlags& f, CudaBackendOptions o, long long length, double device_bytes) {
  if (!f.gpu_mem.empty()) o.placement_memory_bytes = parse_bytes(f.gpu_mem, "--gpu-mem");
  const int layers = CudaBackend::memory_model_offload(config, o, device_bytes, length);
  if (layers < 0) throw ConfigError("--offload-layers auto", "", "the memory model fits no placement at " + std::to_string(length) + " tokens");
  return layers;
}

Point measure(const ModelConfig& config, const BenchFlags& f, const SparseSetup& sp, long long R, long long depth, double device_bytes) {
  Point p;
  p.requests = R;
  p.depth = depth;
  const int total_steps = f.warmup + f.steps * f.reps;
  CudaBackendOptions o;
  o.max_requests = static_cast<int>(R);
  o.max_context = depth + total_steps + 1;
  o.cuda_graph = !f.no_graph;
  o.programmatic_launch = !f.no_pdl;
  o.persistent_decode = f.persistent;
  o.prefill_chunk = 1;  // no prefill here: the KV cache is filled with random values
  o.policy = sp.policy;
  o.budget = f.budget;
  o.draft = sp.draft ? &*sp.draft : nullptr;
  o.async_prefetch = !f.sync_prefetch;
  o.prefetch_group = f.prefetch_group;
  o.gather_blocks = f.gather_blocks;
  o.host_pages = parse_host_pages(f.host_pages, "--host-pages");
  o.profile_steps = f.breakdown;
  if (f.adaptive) {
    // c3 for real: the engine moves layers as the context grows; --gpu-mem is then its hard limit.
    o.adaptive_placement = true;
    o.initial_capacity = depth + 1;
    if (!f.gpu_mem.empty()) o.memory_limit_bytes = parse_bytes(f.gpu_mem, "--gpu-mem");
  }
  std::optional<SyntheticSelectionStream> synthetic;
  std::unique_ptr<CudaBackend> b;
  try {
    o.offload_layers = f.adaptive ? 0 : f.offload == "auto" ? planned_offload(config, f, o, o.max_context, device_bytes)
                                           : static_cast<int>(parse_integer_list(f.offload, "--offload-layers", 0, config.shape.layers).at(0));
    if (f.overlap >= 0) {
      synthetic = make_synthetic_selection(std::vector<std::int64_t>(static_cast<std::size_t>(R), depth), static_cast<int>(config.shape.kv_heads),
                                           std::min<std::int64_t>(f.budget, o.max_context), f.overlap, total_steps, f.seed);
      o.synthetic_selection = &*synthetic;
      p.achieved_overlap = synthetic->achieved_overlap;
    }
    b = std::make_unique<CudaBackend>(config, f.seed, o);
  } catch (const ConfigError& e) {
    p.fits = false;
    p.reason = e.what();
    return p;
  }
  const std::string refusal = b->persistent_decode_refusal();
  p.decode_kernel = R == 1 && refusal.empty() ? "persistent" : R == 1 && f.persistent ? "chain (" + refusal + ")" : "chain";
  std::vector<int> requests(static_cast<std::size_t>(R)), tokens(static_cast<std::size_t>(R), 1);
  for (long long r = 0; r < R; ++r) {
    requests[static_cast<std::size_t>(r)] = static_cast<int>(r);
    b->fill_random_context(static_cast<int>(r), depth, f.seed + static_cast<std::uint64_t>(r));
  }
  std::int64_t step = 0;
  for (int w = 0; w < f.warmup; ++w) tokens = b->decode_sample(requests, tokens, {}, step++);
  b->take_h2d_bytes();
  b->take_step_profile();
  for (int rep = 0; rep < f.reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < f.steps; ++s) tokens = b->decode_sample(requests, tokens, {}, step++);  // each returns its tokens: synchronised
    p.ms_per_step.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / f.steps);
  }
  // Bytes a step must move at least: the streamed weights once, and K and V of every cached
  // token of every request (at the mean depth of the timed steps).
  p.h2d_bytes_per_step = b->take_h2d_bytes() / (f.steps * f.reps);
  p.offloaded_layers = b->offloaded_layers();  // at the end (c3 may have moved layers during the run)
  p.host_huge_page_bytes = b->host_huge_page_bytes();
  p.device_bytes_in_use = b->device_bytes_in_use();  // at the end: caches only grow, and offloading frees
  p.phases = b->take_step_profile();
  const double mean_depth = static_cast<double>(depth + f.warmup) + 0.5 * f.steps * f.reps;
  // Sparse steps read B + 1 positions per layer (quest: its whole pages, ceil(B / 16) * 16 + 1, and
  // the min and max keys of every page, as many bytes per page as one position's K and V), and the
  // retrieval head's keys of every position.
  const bool quest = sp.policy == SelectionPolicy::Quest;
  const double pages = std::ceil(mean_depth / 16.0), listed = quest ? std::ceil(f.budget / 16.0) * 16.0 + 1.0 : static_cast<double>(f.budget + 1);
  const double attended = sp.policy == SelectionPolicy::Full ? mean_depth : std::min<double>(mean_depth, listed) + (quest ? pages : 0.0);
  const double head_keys = sp.draft ? 2.0 * static_cast<double>(sp.draft->config.layer.shape.kv_heads * sp.draft->config.layer.shape.head_dim) * mean_depth : 0.0;
  p.bytes_per_step = b->streamed_weight_bytes() + static_cast<double>(R) * (attended * b->kv_bytes_per_token() + head_keys);
  p.median_ms = median(p.ms_per_step);
  p.min_ms = *std::min_element(p.ms_per_step.begin(), p.ms_per_step.end());
  p.max_ms = *std::max_element(p.ms_per_step.begin(), p.ms_per_step.end());
  return p;
}

// Sum of step times over positions from..to-1, linear between the sampled depths (flat past the ends).
double integrate_ms(const std::vector<Point>& sampled, long long from, long long to) {
  std::vector<std::pair<double, double>> xy;
  for (const Point& p : sampled)
    if (p.fits) xy.emplace_back(static_cast<double>(p.depth), p.median_ms);
  std::sort(xy.begin(), xy.end());
  if (xy.empty()) throw ConfigError("--span", "", "no sampled depth fits");
  double total = 0;
  for (long long S = from; S < to; ++S) {
    const double x = static_cast<double>(S);
    auto hi = std::lower_bound(xy.begin(), xy.end(), std::make_pair(x, -1.0));
    if (hi == xy.begin()) total += xy.front().second;
    else if (hi == xy.end()) total += xy.back().second;
    else {
      const auto lo = hi - 1;
      total += lo->second + (hi->second - lo->second) * (x - lo->first) / (hi->first - lo->first);
    }
  }
  return total;
}
#endif

// The flags, checked before the device is asked (and in builds without CUDA), so that a bad one is
// named on any machine. Returns the policy and the ablation's components, if any.
std::pair<SelectionPolicy, std::optional<Components>> check_flags(const BenchFlags& f, const ModelConfig& config) {
  if (!f.random_weights) throw ConfigError("--random-weights", "", "bench runs on random weights at the model's shape; pass --random-weights");
  if (f.steps <= 0 || f.reps <= 0 || f.warmup < 0) throw ConfigError("--steps/--reps", "", "must be positive");
  const SelectionPolicy policy = parse_selection_policy(f.policy, "--policy");
  if (policy != SelectionPolicy::Full && f.budget < 1) throw ConfigError("--budget", "", "policy " + f.policy + " needs a KV budget (--budget B)");
  if (f.overlap >= 0 && policy != SelectionPolicy::SpeContext) throw ConfigError("--overlap", "", "a synthetic selection stream replaces policy specontext's choice");
  if (f.overlap > 1) throw ConfigError("--overlap", "", "must be in [0, 1], got " + std::to_string(f.overlap));
  if (f.prefetch_group < 1) throw ConfigError("--prefetch-group", "", "must be positive, got " + std::to_string(f.prefetch_group));
  if (f.gather_blocks < 1) throw ConfigError("--gather-blocks", "", "must be positive, got " + std::to_string(f.gather_blocks));
  parse_host_pages(f.host_pages, "--host-pages");
  if (f.offload != "auto") parse_integer_list(f.offload, "--offload-layers", 0, config.shape.layers);
  if (!f.gpu_mem.empty()) parse_bytes(f.gpu_mem, "--gpu-mem");
  const std::optional<Components> components = f.components.empty() ? std::nullopt : std::optional<Components>(parse_components(f.components));
  if (components && policy != SelectionPolicy::SpeContext) throw ConfigError("--components", "", "the ablation runs policy specontext");
  return {policy, components};
}

#if defined(SPECONTEXT_HAVE_CUDA)
// --hw auto: the hardware file that names this device (sim/hardware.hpp), said on stderr; the
// roofline is that file's HBM bandwidth.
std::filesystem::path hardware_of(const std::string& hw, const std::string& device_name) {
  if (hw != "auto") return resolve_config(hw, "hardware");
  const auto dir = configs_dir() / "hardware";
  const std::optional<std::filesystem::path> found = hardware_for_device(device_name, dir);
  if (!found)
    throw ConfigError("--hw auto", "", "no single file of " + dir.string() + " describes the device '" + device_name + "': name one with --hw");
  std::cerr << "[bench] --hw auto: " << found->string() << " for '" << device_name << "'\n";
  return *found;
}
#endif

void run(const BenchFlags& f) {
  const ModelConfig config = load_engine_config(resolve_config(f.model, "models"));
  if (f.hw != "auto") load_hardware(resolve_config(f.hw, "hardware"));  // a bad --hw fails before any device work
  const auto [policy, components] = check_flags(f, config);
#if !defined(SPECONTEXT_HAVE_CUDA)
  (void)policy, (void)components;
  throw ConfigError("bench", "", "this build has no CUDA (no nvcc at configure time)");
#else
  SparseSetup sp;
  sp.policy = policy;
  const DeviceReport dev = query_devices();
  if (dev.devices.empty()) throw ConfigError("bench", "", "no CUDA device: " + dev.error);
  const Hardware hw = load_hardware(hardware_of(f.hw, dev.devices[0].name));
  if (needs_retrieval_head(sp.policy)) {
    if (f.dlm_config.empty()) throw ConfigError("--dlm-config", "", "policy " + f.policy + " needs the draft's config (random weights at its shape)");
    sp.draft.emplace();
    sp.draft->config = load_eagle3_draft_config(resolve_config(f.dlm_config, "models"), config);
    sp.draft->weights = random_eagle3_draft_weights(sp.draft->config, f.seed);
    // YaRN past the draft's trained context (as the paper extends its drafts); it changes values, not the work.
    long long longest = 0;
    for (long long d : parse_integer_list(f.depths, "--depth", 1, 0x7ffffffe)) longest = std::max(longest, d);
    extend_draft_context(sp.draft->config, longest + f.warmup + static_cast<long long>(f.steps) * f.reps + 1);
  }
  BenchFlags run_flags = f;
  if (components) {
    // The paper's ablation: c1 sparse attention over offloaded KV loaded synchronously, c2 the
    // asynchronous elastic prefetch, c3 the memory model's placement instead of every layer offloaded.
    run_flags.sync_prefetch = !components->c2;
    run_flags.offload = components->c3 ? "auto" : std::to_string(config.shape.layers);
  }
  const double peak = hw.hbm_bandwidth_Bps;
  // --sweep: the rate a plain read of 4 GiB reaches on this device now, before the points allocate
  // (its buffer is freed again); each point's achieved rate is then also a share of it.
  double sweep_Bps = 0;
  if (f.sweep) {
    constexpr std::size_t kSweepBytes = std::size_t{4} << 30;
    sweep_Bps = static_cast<double>(kSweepBytes) / (median(kernels::hbm_read_sweep_ms(kSweepBytes, 5)) / 1e3);
    std::cerr << "[bench] --sweep: reading 4 GiB at " << fixed(sweep_Bps / 1e12, 3) << " TB/s\n";
  }
  const auto sweep_pct = [&](const Point& p) { return 100.0 * p.bytes_per_step / (p.median_ms / 1e3) / sweep_Bps; };
  std::vector<Point> points;
  for (long long R : parse_integer_list(f.requests, "--requests", 1, 1 << 20))
    for (long long depth : parse_integer_list(f.depths, "--depth", 1, 0x7ffffffe)) {
      std::cerr << "[bench] R=" << R << " depth=" << depth << "\n";
      points.push_back(measure(config, run_flags, sp, R, depth, dev.devices[0].memory_bytes));
    }
  const auto& d = dev.devices[0];
  nlohmann::json span_json;
  if (!f.span.empty()) {
    const auto colon = f.span.find(':');
    if (colon == std::string::npos) throw ConfigError("--span", "", "expected FROM:TO, got '" + f.span + "'");
    const long long from = parse_integer_list(f.span.substr(0, colon), "--span", 1, 0x7ffffffe).at(0);
    const long long to = parse_integer_list(f.span.substr(colon + 1), "--span", from + 1, 0x7ffffffe).at(0);
    const long long R = parse_integer_list(f.requests, "--requests", 1, 1 << 20).at(0);
    BenchFlags whole = run_flags;
    whole.warmup = 0;
    whole.reps = 1;
    whole.steps = static_cast<int>(to - from);
    std::cerr << "[bench] end to end: R=" << R << " from " << from << " to " << to << "\n";
    const Point e2e = measure(config, whole, sp, R, from, d.memory_bytes);
    if (!e2e.fits) throw ConfigError("--span", "", "the end-to-end run does not fit: " + e2e.reason);
    const double measured_ms = e2e.median_ms * static_cast<double>(to - from);
    const double integrated_ms = integrate_ms(points, from, to);
    span_json = {{"from", from}, {"to", to}, {"requests", R}, {"end_to_end_s", measured_ms / 1e3}, {"integrated_s", integrated_ms / 1e3},
                 {"error_pct", 100.0 * (integrated_ms - measured_ms) / measured_ms},
                 {"end_to_end_tokens_per_s", static_cast<double>(R * (to - from)) / (measured_ms / 1e3)},
                 {"integrated_tokens_per_s", static_cast<double>(R * (to - from)) / (integrated_ms / 1e3)},
                 {"offloaded_layers", e2e.offloaded_layers}, {"h2d_bytes_per_step", e2e.h2d_bytes_per_step}};
    if (!f.json)
      std::cout << "span " << from << ":" << to << ", R = " << R << ": end to end " << fixed(measured_ms / 1e3, 3) << " s, integrated from the points "
                << fixed(integrated_ms / 1e3, 3) << " s (" << fixed(span_json["error_pct"].get<double>(), 2) << "%)\n";
  }
  if (f.json) {
    nlohmann::json pts = nlohmann::json::array();
    for (const auto& p : points) {
      nlohmann::json j = {{"requests", p.requests}, {"depth", p.depth}, {"fits", p.fits}, {"offloaded_layers", p.offloaded_layers}, {"decode_kernel", p.decode_kernel},
                          {"device_bytes_in_use", p.device_bytes_in_use}, {"host_huge_page_bytes", p.host_huge_page_bytes},
                          {"h2d_bytes_per_step", p.h2d_bytes_per_step},
                          {"synthetic_overlap", p.achieved_overlap >= 0 ? nlohmann::json(p.achieved_overlap) : nlohmann::json(nullptr)}};
      if (p.phases.steps > 0) {
        nlohmann::json ph;
        for (std::size_t i = 0; i < p.phases.ms.size(); ++i) ph[to_string(static_cast<StepPhase>(i))] = p.phases.ms[i] / p.phases.steps;
        j["phases_ms_per_step"] = ph;
      }
      if (!p.fits) {
        j["reason"] = p.reason;
      } else {
        j.update({{"median_ms", p.median_ms}, {"min_ms", p.min_ms}, {"max_ms", p.max_ms}, {"ms_per_rep", p.ms_per_step},
                  {"tokens_per_s", p.requests / (p.median_ms / 1e3)}, {"bytes_per_step", p.bytes_per_step},
                  {"hbm_gbps", p.bytes_per_step / (p.median_ms / 1e3) / 1e9},
                  {"roofline_ms", p.bytes_per_step / peak * 1e3},
                  {"roofline_pct", 100.0 * (p.bytes_per_step / peak) / (p.median_ms / 1e3)}});
        if (f.sweep) j["sweep_pct"] = sweep_pct(p);
      }
      pts.push_back(j);
    }
    std::cout << nlohmann::json{{"gpu", d.name}, {"driver_version", dev.driver_version}, {"driver_release", dev.driver_release}, {"cuda_runtime_version", dev.runtime_version},
                                {"model", config.origin}, {"hbm_peak_Bps", peak}, {"hbm_peak_source", hw.origin},
                                {"hbm_sweep_Bps", f.sweep ? nlohmann::json(sweep_Bps) : nlohmann::json(nullptr)},
                                {"policy", f.policy}, {"budget", sp.policy == SelectionPolicy::Full ? nlohmann::json(nullptr) : nlohmann::json(f.budget)},
                                {"draft", f.dlm_config}, {"selection", f.overlap >= 0 ? "synthetic stream, stated overlap " + std::to_string(f.overlap) : std::string("the policy's own")},
                                {"prefetch", run_flags.sync_prefetch ? "synchronous (c1)" : "copy stream (c1+c2)"}, {"components", f.components}, {"prefetch_group", f.prefetch_group},
                                {"gather_blocks", f.gather_blocks}, {"host_pages", f.host_pages}, {"span", span_json},
                                {"steps", f.steps}, {"reps", f.reps}, {"cuda_graph", !f.no_graph}, {"programmatic_launch", !f.no_pdl}, {"persistent_decode", f.persistent}, {"points", pts}}
                     .dump(2)
              << "\n";
    return;
  }
  std::cout << d.name << ", driver " << dev.driver_release << " (CUDA " << dev.driver_version << "), CUDA runtime " << dev.runtime_version << "; " << config.origin
            << "; roofline at " << fixed(peak / 1e12, 2) << " TB/s; " << f.reps << " reps x " << f.steps << " steps; policy " << f.policy
            << (sp.policy == SelectionPolicy::Full ? std::string() : ", B = " + std::to_string(f.budget))
            << (f.overlap >= 0 ? ", synthetic selection (overlap " + fixed(f.overlap, 2) + ")" : std::string()) << "\n";
  if (f.sweep)
    std::cout << "read sweep (4 GiB): " << fixed(sweep_Bps / 1e12, 3) << " TB/s, " << fixed(100.0 * sweep_Bps / peak, 1) << "% of the roofline's\n";
  std::cout << "\n|   R |  depth | offloaded | ms/step (median, min-max) | tokens/s | HBM GB/s | % roofline | H2D MB/step |" << (f.sweep ? " % sweep |" : "")
            << "\n|----:|-------:|----------:|--------------------------:|---------:|---------:|-----------:|------------:|" << (f.sweep ? "--------:|" : "") << "\n";
  for (const auto& p : points) {
    std::cout << "| " << p.requests << " | " << p.depth << " | " << p.offloaded_layers << " | ";
    if (!p.fits) {
      std::cout << "does not fit | | | | |" << (f.sweep ? " |" : "") << "\n";
      continue;
    }
    std::cout << fixed(p.median_ms, 3) << " (" << fixed(p.min_ms, 3) << "-" << fixed(p.max_ms, 3) << ") | "
              << fixed(p.requests / (p.median_ms / 1e3), 1) << " | " << fixed(p.bytes_per_step / (p.median_ms / 1e3) / 1e9, 0) << " | "
              << fixed(100.0 * (p.bytes_per_step / peak) / (p.median_ms / 1e3), 1) << " | " << fixed(p.h2d_bytes_per_step / 1e6, 2) << " |"
              << (f.sweep ? " " + fixed(sweep_pct(p), 1) + " |" : "") << "\n";
  }
  if (f.persistent)
    for (const auto& p : points)
      if (p.requests == 1 && p.fits) {
        std::cout << "\nR = 1 decode: " << (p.decode_kernel == "persistent" ? "the persistent kernel" : p.decode_kernel) << "\n";
        break;
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
  cmd->add_option("--hw", f->hw, "hardware config whose HBM bandwidth is the roofline (auto: the file that names the device)")->capture_default_str();
  cmd->add_option("--seed", f->seed, "random weights' and KV's seed")->capture_default_str();
  cmd->add_flag("--no-graph", f->no_graph, "launch kernel by kernel instead of replaying a CUDA graph");
  cmd->add_flag("--no-pdl", f->no_pdl, "launch the decode chain's kernels without programmatic dependent launch (to measure what it buys)");
  cmd->add_flag("--persistent", f->persistent,
                "decode R = 1 as one persistent kernel (kernels/persistent_decode.cuh) instead of the kernel chain, to compare them");
  cmd->add_option("--policy", f->policy, "KV selection: full, streaming, oracle, specontext, specontext-batch or quest")->capture_default_str();
  cmd->add_option("--budget", f->budget, "positions per KV head a sparse policy keeps");
  cmd->add_option("--dlm-config", f->dlm_config, "the draft's config.json for specontext (random weights at its shape)");
  cmd->add_option("--overlap", f->overlap, "specontext: replace the choice by a synthetic stream with this overlap of adjacent steps");
  cmd->add_option("--offload-layers", f->offload, "the last N layers' KV in pinned host memory, or auto (the memory model)")->capture_default_str();
  cmd->add_option("--gpu-mem", f->gpu_mem, "GPU memory the auto placement plans for (bytes, or with GB/GiB/MB/MiB)");
  cmd->add_flag("--sync-prefetch", f->sync_prefetch, "elastic loads on the compute stream (c1) instead of the copy stream (c1+c2)");
  cmd->add_option("--prefetch-group", f->prefetch_group, "offloaded layers per gather and event")->capture_default_str();
  cmd->add_option("--gather-blocks", f->gather_blocks, "grid cap of the gather kernel")->capture_default_str();
  cmd->add_option("--host-pages", f->host_pages, "how offloaded layers' host KV is pinned: cuda (cudaHostAlloc) or huge (transparent huge pages, registered)")->capture_default_str();
  cmd->add_flag("--breakdown", f->breakdown, "time each step's phases with CUDA events (retrieval head, select, prefetch, prefetch wait, attention, MLP, other); launches kernel by kernel");
  cmd->add_option("--components", f->components, "the paper's ablation with specontext: c1 (every layer offloaded, synchronous loads), c1,c2 (+ copy-stream prefetch), c1,c2,c3 (+ the memory model's placement)");
  cmd->add_flag("--adaptive", f->adaptive, "c3: the engine's memory manager moves layers to host memory as the context grows (--gpu-mem: its hard limit)");
  cmd->add_option("--span", f->span, "FROM:TO: also one end-to-end run over the span, compared with the points integrated over it");
  cmd->add_flag("--sweep", f->sweep, "first measure the rate a plain read of 4 GiB reaches (the device's read ceiling) and give each point's share of it");
  cmd->add_flag("--json", f->json, "print JSON");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
