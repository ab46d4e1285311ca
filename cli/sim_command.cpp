// specontext sim: one system, one workload, on one machine: throughput, memory, traffic.
//
// The adjacent-step overlap that elastic loading relies on is --overlap (default 0.8), or, with
// --overlap-from FILE, the overlap measured in an attention trace (traces/trace_file.hpp) for
// --overlap-policy (default specontext) at the scenario's --budget (sim/trace_replay.hpp). JSON
// output adds "overlap" and "overlap_source" ("flag", "default" or {"file", "policy", "budget"}).
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/scenario_flags.hpp"
#include "sim/config_error.hpp"
#include "sim/simulator.hpp"
#include "sim/trace_replay.hpp"
#include "traces/trace_file.hpp"

namespace specontext::cli {
namespace {

struct SimFlags {
  ScenarioFlags scenario;
  std::string system, components = "c1,c2,c3", requests = "1", trace_out, overlap_from, overlap_policy = "specontext";
  long long input = 0, output = 0, trace_at = -1;
  double overlap = 0.8;
};

void print_table(const SimResult& r, const Scenario& sc, const std::string& overlap_line) {
  std::cout << r.system << (r.components.empty() ? "" : "[" + r.components + "]") << ": " << sc.model.name << " on " << sc.hw.name << ", ["
            << sc.workload.input << ", " << sc.workload.output << "], B=" << sc.workload.budget << ", R=" << r.requests << "\n";
  if (!overlap_line.empty()) std::cout << "  " << overlap_line << "\n";
  if (!r.feasible) {
    std::cout << "  infeasible: " << r.reason << "\n";
    return;
  }
  std::cout << "  throughput            " << fixed(r.throughput_tok_s, 1) << " tokens/s (decode only " << fixed(r.decode_throughput_tok_s, 1) << ")\n"
            << "  prefill               " << fixed(r.prefill_s * 1e3, 1) << " ms\n"
            << "  decode                " << fixed(r.decode_s, 3) << " s, mean step " << fixed(r.mean_step_s * 1e3, 2) << " ms (integration error ~"
            << fixed(r.integration_rel_err * 100, 3) << "%)\n"
            << "  peak GPU memory       " << gb(r.peak_gpu_bytes) << " of " << gb(sc.gpu_memory_bytes) << "\n"
            << "  peak host memory      " << gb(r.peak_host_bytes) << "\n"
            << "  H2D per step          " << mb(r.h2d_bytes_per_step) << "\n\n"
            << "        S   step ms   GPU layers   H2D MB\n";
  for (const auto& s : r.samples) {
    std::string S = std::to_string(s.S);
    std::cout << std::string(9 - std::min<std::size_t>(8, S.size()), ' ') << S << "  " << fixed(s.step_s * 1e3, 3) << "   " << s.gpu_layers
              << "           " << fixed(s.h2d_bytes / 1e6, 2) << "\n";
  }
}

}  // namespace

void add_sim_command(CLI::App& app) {
  auto f = std::make_shared<SimFlags>();
  CLI::App* cmd = app.add_subcommand("sim", "predict throughput, memory and host-link traffic of a decoding system");
  f->scenario.add_to(*cmd, false);
  cmd->add_option("--system", f->system, "hf-eager, hf-flash, flashinfer, quest, clusterkv, shadowkv or specontext")->required();
  cmd->add_option("--components", f->components, "specontext's components: c1 (retrieval head, sparse attention), c2 (elastic prefetch), c3 (adaptive memory)")
      ->capture_default_str();
  cmd->add_option("--in", f->input, "prompt tokens per request")->required();
  cmd->add_option("--out", f->output, "generated tokens per request")->required();
  cmd->add_option("--requests", f->requests, "requests decoded together, or 'best' for the feasible count with the highest throughput")
      ->capture_default_str();
  CLI::Option* overlap_flag =
      cmd->add_option("--overlap", f->overlap, "adjacent-step selection overlap for elastic loading (paper: >0.8)")->capture_default_str();
  cmd->add_option("--overlap-from", f->overlap_from, "take the overlap at --budget from an attention trace (specontext replay) instead of --overlap");
  CLI::Option* policy_flag = cmd->add_option("--overlap-policy", f->overlap_policy, "the trace's policy whose overlap --overlap-from takes (or oracle)")->capture_default_str();
  cmd->add_option("--trace-out", f->trace_out, "write the predicted decode step as a Chrome trace (JSON)");
  cmd->add_option("--trace-at", f->trace_at, "context length of the traced step (default: the middle of the generation)");
  cmd->callback([f, overlap_flag, policy_flag]() {
    ScenarioSpec spec = f->scenario.spec();
    spec.system = f->system;
    spec.components = f->components;
    spec.overlap = f->overlap;
    nlohmann::json overlap_source = overlap_flag->count() > 0 ? "flag" : "default";
    std::string overlap_line = "overlap " + fixed(f->overlap, 3) + (overlap_flag->count() > 0 ? " (--overlap)" : " (default)");
    if (!f->overlap_from.empty()) {
      if (overlap_flag->count() > 0) throw ConfigError("--overlap-from", "", "give either --overlap or --overlap-from, not both");
      const traces::Trace trace = traces::read_trace(f->overlap_from);
      try {
        spec.overlap = trace_overlap(trace, f->overlap_policy, spec.workload.budget);
      } catch (const ConfigError& e) {
        throw ConfigError(f->overlap_from, "", e.what());
      }
      overlap_source = {{"file", f->overlap_from}, {"policy", f->overlap_policy}, {"budget", spec.workload.budget}};
      overlap_line = "overlap " + fixed(spec.overlap, 3) + " (from " + f->overlap_from + ", policy " + f->overlap_policy +
                     ", B = " + std::to_string(spec.workload.budget) + ")";
    } else if (policy_flag->count() > 0) {
      throw ConfigError("--overlap-policy", "", "only meaningful with --overlap-from");
    }
    spec.workload.input = f->input;
    spec.workload.output = f->output;
    const bool best = f->requests == "best";
    if (!best) {
      try {
        spec.workload.requests = std::stoll(f->requests);
      } catch (const std::exception&) {
        throw ConfigError("--requests", "", "expected a positive integer or 'best', got '" + f->requests + "'");
      }
    }
    Scenario sc = make_scenario(spec);
    const auto system = make_system(f->system);
    const SimResult r = best ? simulate_best_requests(sc, *system) : simulate(sc, *system);
    sc.workload.requests = r.requests;
    if (!f->trace_out.empty()) {
      if (!r.feasible) throw ConfigError("--trace-out", "", "no trace: the run is infeasible (" + r.reason + ")");
      const long long S = f->trace_at >= 0 ? f->trace_at : sc.workload.input + sc.workload.output / 2;
      std::ofstream out(f->trace_out);
      if (!out) throw ConfigError(f->trace_out, "", "cannot write the trace file");
      out << decode_step_trace(sc, *system, S).dump() << "\n";
    }
    if (f->scenario.json) {
      nlohmann::json j = to_json(r);
      j["hardware"] = sc.hw.name;
      j["model"] = sc.model.name;
      j["input"] = sc.workload.input;
      j["output"] = sc.workload.output;
      j["budget"] = sc.workload.budget;
      j["gpu_memory_bytes"] = sc.gpu_memory_bytes;
      j["overlap"] = sc.overlap;
      j["overlap_source"] = overlap_source;
      std::cout << j.dump(2) << "\n";
    } else {
      // Only specontext's elastic loading uses the overlap; say where it came from when it matters or was asked for.
      const bool show = f->system == "specontext" || overlap_flag->count() > 0 || !f->overlap_from.empty();
      print_table(r, sc, show ? overlap_line : "");
    }
  });
}

}  // namespace specontext::cli
