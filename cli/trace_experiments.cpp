#include "cli/trace_experiments.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "sim/config_error.hpp"
#include "sim/json_fields.hpp"
#include "sim/model_shape.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/simulator.hpp"
#include "sim/sweep.hpp"
#include "sim/system_model.hpp"
#include "sim/trace_replay.hpp"
#include "traces/trace_file.hpp"

namespace specontext::cli {
namespace {

namespace fs = std::filesystem;

// The committed result files the manifest lists under key, copied as they are into dest.
void copy_listed_files(const JsonFields& m, const std::string& key, const fs::path& source_dir, const fs::path& dest) {
  if (!m.has(key)) return;
  if (!m.raw(key).is_array()) m.fail(key, "expected a list of file names");
  fs::create_directories(dest);
  std::set<std::string> names;
  for (const auto& item : m.raw(key)) {
    if (!item.is_string()) m.fail(key, "expected file names");
    const fs::path file = source_dir / item.get<std::string>();
    if (!names.insert(file.filename().string()).second)
      m.fail(key, "two files are named " + file.filename().string() + " (each is copied under its name alone)");
    std::error_code ec;
    fs::copy_file(file, dest / file.filename(), fs::copy_options::overwrite_existing, ec);
    if (ec) m.fail(key, "cannot copy " + file.string() + ": " + ec.message());
  }
}

// The mean context a trace's decode steps saw (positions 0..t of each record).
double mean_trace_context(const traces::Trace& t) {
  double sum = 0;
  for (const traces::StepRecord& r : t.steps) sum += static_cast<double>(r.position + 1);
  return sum / static_cast<double>(t.steps.size());
}

const ReplayResult& find_result(const std::vector<ReplayResult>& results, const std::string& policy, const std::string& origin) {
  for (const ReplayResult& r : results)
    if (r.policy == policy) return r;
  throw ConfigError(origin, "policy", "the trace records no policy '" + policy + "'");
}

void write_trace_sims(const nlohmann::json& items, const std::string& origin, const std::map<std::string, traces::Trace>& loaded,
                      const fs::path& csv_path) {
  std::ofstream csv(csv_path);
  if (!csv) throw ConfigError(csv_path.string(), "", "cannot write");
  csv << "trace,policy,system,components,hardware,model,input,output,requests,budget,trace_budget,recall,overlap,feasible,reason,"
         "throughput_tok_s,decode_throughput_tok_s,mean_step_ms,h2d_bytes_per_step,prefetch_ms,peak_gpu_bytes\n";
  for (const auto& item : items) {
    JsonFields f(item, origin + " trace_sims[]");
    const std::string name = f.string("trace");
    const auto it = loaded.find(name);
    if (it == loaded.end()) f.fail("trace", "no attention trace named '" + name + "' in attention_traces");
    const traces::Trace& trace = it->second;
    Workload w;
    w.input = f.integer("in");
    w.output = f.integer("out");
    const std::string requests = f.raw("requests").is_string() ? f.string("requests") : std::to_string(f.integer("requests"));
    if (requests != "best") w.requests = std::stoll(requests);
    const double sim_context = static_cast<double>(w.input) + 0.5 * static_cast<double>(w.output);
    const double trace_context = mean_trace_context(trace);
    for (const auto& b : f.raw("budgets")) {
      if (!b.is_number_integer() || b.get<long long>() < 1) f.fail("budgets", "expected positive integers");
      const long long budget = b.get<long long>();
      const std::int64_t trace_budget =
          std::clamp<std::int64_t>(std::llround(static_cast<double>(budget) * trace_context / sim_context), 1, trace.header.b_max);
      ReplayOptions ro;
      ro.budgets = {trace_budget};
      const std::vector<ReplayResult> replayed = replay_trace(trace, ro);
      for (const auto& p : f.raw("policies")) {
        JsonFields pf(p, f.origin() + " policies[]");
        const ReplayResult& rr = find_result(replayed, pf.string("policy"), pf.origin());
        if (!rr.overlap) pf.fail("policy", "the trace has no two steps of one request: no overlap");
        for (const auto& t : f.raw("targets")) {
          JsonFields tf(t, f.origin() + " targets[]");
          ScenarioSpec spec;
          spec.hardware = tf.string("hw");
          spec.model = tf.string("model");
          spec.draft = tf.optional_string("draft").value_or("");
          spec.system = pf.string("system");
          spec.components = pf.optional_string("components").value_or("c1,c2,c3");  // read by specontext only
          if (tf.has("gpu_memory_bytes")) spec.gpu_memory_cap = tf.positive("gpu_memory_bytes");
          spec.workload = w;
          spec.workload.budget = budget;
          spec.overlap = *rr.overlap;
          Scenario sc = make_scenario(spec);
          const auto system = make_system(spec.system);
          const SimResult r = requests == "best" ? simulate_best_requests(sc, *system) : simulate(sc, *system);
          const double prefetch_ms = sc.hw.h2d_bandwidth_Bps > 0 ? r.h2d_bytes_per_step / sc.hw.h2d_bandwidth_Bps * 1e3 : 0.0;
          csv << csv_quote(name) << ',' << csv_quote(rr.policy) << ',' << spec.system << ',' << csv_quote(spec.system == "specontext" ? spec.components : "") << ','
              << csv_quote(sc.hw.name) << ',' << csv_quote(sc.model.name) << ',' << w.input << ',' << w.output << ',' << r.requests << ','
              << budget << ',' << trace_budget << ',' << rr.recall.mean << ',' << *rr.overlap << ',' << (r.feasible ? "true" : "false") << ','
              << csv_quote(r.reason) << ',' << r.throughput_tok_s << ',' << r.decode_throughput_tok_s << ',' << r.mean_step_s * 1e3 << ','
              << r.h2d_bytes_per_step << ',' << prefetch_ms << ',' << r.peak_gpu_bytes << '\n';
        }
      }
      std::cerr << "[trace-sims] " << name << " B=" << budget << " (trace B=" << trace_budget << ")\n";
    }
  }
  if (!csv) throw ConfigError(csv_path.string(), "", "writing failed");
}

}  // namespace

void run_trace_experiments(const nlohmann::json& manifest, const std::string& origin, const fs::path& source_dir, const fs::path& out) {
  JsonFields m(manifest, origin);
  std::map<std::string, traces::Trace> loaded;
  if (m.has("attention_traces")) {
    fs::create_directories(out / "attention");
    for (const auto& item : m.raw("attention_traces")) {
      JsonFields f(item, origin + " attention_traces[]");
      const std::string name = f.string("name");
      const fs::path file = source_dir / f.string("file");
      const ModelShape target = load_model_config(resolve_config(f.optional_string("target").value_or("llama-3.1-8b"), "models"));
      traces::Trace t = traces::read_trace(file);
      if (t.steps.empty()) f.fail("file", file.string() + " holds no decode steps");
      ReplayOptions o;
      o.budgets = default_replay_budgets(t.header.b_max);
      o.target = &target;
      o.shared_oracle = true;  // the ceiling of a selection shared by every layer, beside the per-layer oracle
      const nlohmann::json report = replay_report_json(t, f.string("file"), &target, replay_trace(t, o));
      std::ofstream j(out / "attention" / (name + ".replay.json"));
      j << report.dump(1) << "\n";
      if (!j) throw ConfigError((out / "attention").string(), "", "cannot write " + name + ".replay.json");
      std::cerr << "[attention] " << name << "\n";
      loaded.emplace(name, std::move(t));
    }
  }
  if (m.has("trace_sims")) {
    fs::create_directories(out / "csv");
    write_trace_sims(m.raw("trace_sims"), origin, loaded, out / "csv" / "trace-sims.csv");
  }
  copy_listed_files(m, "accuracy", source_dir, out / "accuracy");
  copy_listed_files(m, "measured_timelines", source_dir, out / "measured");
  copy_listed_files(m, "engine_pareto", source_dir, out / "engine");
}

}  // namespace specontext::cli
