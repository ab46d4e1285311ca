#include "sim/sweep.hpp"

#include <atomic>
#include <mutex>
#include <ostream>
#include <set>
#include <thread>

#include "sim/json_fields.hpp"

namespace specontext {
namespace {

const std::set<std::string> kExperimentKeys = {"name", "description", "hardware", "models", "systems", "budgets",
                                               "workloads", "requests", "gpu_memory_bytes", "overlap", "draft_part"};

std::vector<HardwareChoice> parse_hardware_list(const JsonFields& f) {
  std::vector<HardwareChoice> out;
  const auto& list = f.raw("hardware");
  if (!list.is_array() || list.empty()) f.fail("hardware", "expected a non-empty list");
  for (const auto& item : list) {
    if (item.is_string()) {
      out.push_back({item.get<std::string>(), "", nullptr});
    } else if (item.is_object()) {
      JsonFields h(item, f.origin() + " hardware[]");
      out.push_back({h.string("config"), h.optional_string("variant").value_or(""), h.has("overrides") ? h.raw("overrides") : nlohmann::json()});
    } else {
      f.fail("hardware", "each entry is a config name or {\"config\", \"variant\", \"overrides\"}");
    }
  }
  return out;
}

std::vector<ModelChoice> parse_models(const JsonFields& f) {
  std::vector<ModelChoice> out;
  const auto& list = f.raw("models");
  if (!list.is_array() || list.empty()) f.fail("models", "expected a non-empty list");
  for (const auto& item : list) {
    if (item.is_string()) {
      out.push_back({item.get<std::string>(), ""});
    } else {
      JsonFields m(item, f.origin() + " models[]");
      out.push_back({m.string("model"), m.optional_string("draft").value_or("")});
    }
  }
  return out;
}

std::vector<SystemChoice> parse_systems(const JsonFields& f) {
  std::vector<SystemChoice> out;
  const auto& list = f.raw("systems");
  if (!list.is_array() || list.empty()) f.fail("systems", "expected a non-empty list");
  const auto known = system_names();
  for (const auto& item : list) {
    SystemChoice c;
    if (item.is_string()) {
      c.system = item.get<std::string>();
    } else {
      JsonFields s(item, f.origin() + " systems[]");
      c.system = s.string("system");
      c.components = s.optional_string("components").value_or("");
    }
    if (std::find(known.begin(), known.end(), c.system) == known.end()) f.fail("systems", "unknown system '" + c.system + "'");
    if (c.system == "specontext" && c.components.empty()) c.components = "c1,c2,c3";
    if (c.system != "specontext" && !c.components.empty()) f.fail("systems", "components apply to specontext only");
    if (!c.components.empty()) parse_components(c.components);  // validates
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

Experiment load_experiment(const std::filesystem::path& path) {
  const nlohmann::json j = read_json_file(path);
  JsonFields f(j, path.string());
  for (const auto& [key, _] : j.items())
    if (!kExperimentKeys.count(key) && key.rfind("_", 0) != 0) f.fail(key, "unknown experiment field");
  Experiment e;
  e.origin = path.string();
  e.name = f.string("name");
  e.description = f.optional_string("description").value_or("");
  e.hardware = parse_hardware_list(f);
  e.models = parse_models(f);
  e.systems = parse_systems(f);
  for (const char* key : {"budgets", "workloads", "requests"})
    if (!f.raw(key).is_array() || f.raw(key).empty()) f.fail(key, "expected a non-empty list");
  for (const auto& b : f.raw("budgets")) {
    if (!b.is_number_integer() || b.get<long long>() <= 0) f.fail("budgets", "each budget is a positive integer");
    e.budgets.push_back(b.get<long long>());
  }
  for (const auto& w : f.raw("workloads")) {
    if (!w.is_array() || w.size() != 2 || !w[0].is_number_integer() || !w[1].is_number_integer() || w[0].get<long long>() <= 0 ||
        w[1].get<long long>() <= 0)
      f.fail("workloads", "each workload is [input, output] with positive integers");
    e.workloads.emplace_back(w[0].get<long long>(), w[1].get<long long>());
  }
  for (const auto& r : f.raw("requests")) {
    if (r.is_string() && r.get<std::string>() == "best") e.requests.push_back(std::nullopt);
    else if (r.is_number_integer() && r.get<long long>() > 0) e.requests.push_back(r.get<long long>());
    else f.fail("requests", "each entry is a positive integer or \"best\"");
  }
  if (f.has("gpu_memory_bytes")) e.gpu_memory_cap = f.positive("gpu_memory_bytes");
  if (f.has("overlap")) e.overlap = f.number("overlap");
  if (f.has("draft_part")) e.draft_part = parse_draft_part(f.string("draft_part"));
  return e;
}

std::vector<SweepRow> run_experiment(const Experiment& e, const Progress& progress, unsigned threads) {
  struct Task {
    ScenarioSpec spec;
    SweepRow row;
    bool best;
  };
  std::vector<Task> tasks;
  for (const auto& hw : e.hardware)
    for (const auto& m : e.models)
      for (const auto& sys : e.systems)
        for (long long B : e.budgets)
          for (const auto& [in, out] : e.workloads)
            for (const auto& R : e.requests) {
              Task t;
              t.spec.hardware = hw.config;
              t.spec.hardware_overrides = hw.overrides;
              t.spec.model = m.model;
              t.spec.draft = m.draft;
              t.spec.system = sys.system;
              if (!sys.components.empty()) t.spec.components = sys.components;
              t.spec.draft_part = e.draft_part;
              t.spec.workload = {in, out, R.value_or(1), B};
              t.spec.gpu_memory_cap = e.gpu_memory_cap;
              t.spec.overlap = e.overlap;
              t.best = !R.has_value();
              t.row = SweepRow{e.name, std::filesystem::path(hw.config).stem().string(), hw.variant, std::filesystem::path(m.model).stem().string(),
                               sys.system, sys.components, B, in, out, t.best ? "best" : "fixed", 0, e.overlap, {}};
              tasks.push_back(std::move(t));
            }
  // Load every scenario up front so that a bad config stops the sweep before any work.
  std::vector<Scenario> scenarios;
  scenarios.reserve(tasks.size());
  for (auto& t : tasks) {
    scenarios.push_back(make_scenario(t.spec));
    t.row.gpu_mem_bytes = scenarios.back().gpu_memory_bytes;
  }

  std::atomic<std::size_t> next{0}, done{0};
  std::mutex progress_mutex;
  auto worker = [&]() {
    for (std::size_t i = next++; i < tasks.size(); i = next++) {
      const auto system = make_system(tasks[i].spec.system);
      tasks[i].row.result = tasks[i].best ? simulate_best_requests(scenarios[i], *system) : simulate(scenarios[i], *system);
      const std::size_t d = ++done;
      if (progress) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        progress(d, tasks.size(), tasks[i].row);
      }
    }
  };
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& th : pool) th.join();

  std::vector<SweepRow> rows;
  for (auto& t : tasks) rows.push_back(std::move(t.row));
  return rows;
}

void write_csv_header(std::ostream& out) {
  out << "experiment,hardware,hardware_variant,model,system,components,budget,input,output,requests_mode,requests,"
         "gpu_mem_bytes,overlap,feasible,reason,throughput_tok_s,decode_throughput_tok_s,prefill_s,decode_s,"
         "peak_gpu_bytes,peak_host_bytes,h2d_bytes_per_step,mean_step_ms,integration_rel_err\n";
}

void write_csv_row(std::ostream& out, const SweepRow& row) {
  const SimResult& r = row.result;
  out << csv_quote(row.experiment) << ',' << csv_quote(row.hardware) << ',' << csv_quote(row.hardware_variant) << ','
      << csv_quote(row.model) << ',' << row.system << ',' << csv_quote(row.components) << ',' << row.budget << ',' << row.input
      << ',' << row.output << ',' << row.requests_mode << ',' << r.requests << ',' << static_cast<long long>(row.gpu_mem_bytes)
      << ',' << row.overlap << ',' << (r.feasible ? "true" : "false") << ',' << csv_quote(r.reason) << ',' << r.throughput_tok_s
      << ',' << r.decode_throughput_tok_s << ',' << r.prefill_s << ',' << r.decode_s << ',' << r.peak_gpu_bytes << ','
      << r.peak_host_bytes << ',' << r.h2d_bytes_per_step << ',' << r.mean_step_s * 1e3 << ',' << r.integration_rel_err << '\n';
}

}  // namespace specontext
