// specontext reproduce: the shipped experiments, memory plans and step traces, the committed attention
// traces replayed and simulated at paper scale with their measured overlap (cli/trace_experiments.hpp),
// then the figures and the report (analysis/make_figures.py) — the README's main job.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/sweep_runner.hpp"
#include "cli/trace_experiments.hpp"
#include "sim/config_error.hpp"
#include "sim/json_fields.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/plan.hpp"
#include "sim/simulator.hpp"

#ifndef SPECONTEXT_SOURCE_DIR
#define SPECONTEXT_SOURCE_DIR "."
#endif

namespace specontext::cli {
namespace {

namespace fs = std::filesystem;

struct ReproduceFlags {
  std::string out, manifest;
  unsigned threads = 0;
  bool no_figures = false;
};

ScenarioSpec spec_from(const JsonFields& f) {
  ScenarioSpec s;
  s.hardware = f.string("hw");
  s.model = f.string("model");
  s.draft = f.optional_string("draft").value_or("");
  s.system = f.optional_string("system").value_or("specontext");
  s.components = f.optional_string("components").value_or("c1,c2,c3");
  s.draft_part = parse_draft_part(f.optional_string("draft_part").value_or("head"));
  s.workload.input = f.optional_integer("in").value_or(1);
  s.workload.output = f.optional_integer("out").value_or(1);
  s.workload.requests = f.integer("requests");
  s.workload.budget = f.integer("budget");
  if (f.has("gpu_memory_bytes")) s.gpu_memory_cap = f.positive("gpu_memory_bytes");
  return s;
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  std::ofstream out(path);
  if (!out) throw ConfigError(path.string(), "", "cannot write");
  out << j.dump(1) << "\n";
}

// The interpreter for the analysis: $SPECONTEXT_PYTHON, else the first that imports
// matplotlib (Debian's python3-matplotlib lives in /usr/bin/python3; elsewhere, such as the
// H200 host, the python3 on PATH has it).
std::string python() {
  if (const char* env = std::getenv("SPECONTEXT_PYTHON"); env && *env) return env;
  for (const char* candidate : {"/usr/bin/python3", "python3"}) {
    const std::string probe = std::string(candidate) + " -c 'import matplotlib' > /dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return candidate;
  }
  throw ConfigError("--no-figures", "", "no python3 with matplotlib found for the figures (install python3-matplotlib, "
                                        "set SPECONTEXT_PYTHON, or pass --no-figures)");
}

void run(const ReproduceFlags& f) {
  const fs::path manifest_path = f.manifest.empty() ? configs_dir() / "reproduce.json" : fs::path(f.manifest);
  const nlohmann::json manifest = read_json_file(manifest_path);
  JsonFields m(manifest, manifest_path.string());
  const fs::path out(f.out);
  fs::create_directories(out / "csv");
  fs::create_directories(out / "plans");
  fs::create_directories(out / "traces");

  for (const auto& name : m.raw("experiments")) {
    const fs::path exp = configs_dir() / "experiments" / (name.get<std::string>() + ".json");
    run_sweep_to_csv(exp, out / "csv", f.threads);
  }
  for (const auto& item : m.raw("plans")) {
    JsonFields p(item, manifest_path.string() + " plans[]");
    const Scenario sc = make_scenario(spec_from(p));
    write_json(out / "plans" / (p.string("name") + ".json"), to_json(make_plan(sc), sc));
    std::cerr << "[plans] " << p.string("name") << "\n";
  }
  for (const auto& item : m.raw("traces")) {
    JsonFields t(item, manifest_path.string() + " traces[]");
    const Scenario sc = make_scenario(spec_from(t));
    const auto system = make_system(spec_from(t).system);
    const Feasibility fz = system->feasibility(sc);
    if (!fz.feasible) throw ConfigError(manifest_path.string(), "traces", t.string("name") + " is infeasible: " + fz.reason);
    write_json(out / "traces" / (t.string("name") + ".trace.json"), decode_step_trace(sc, *system, t.integer("at")));
    std::cerr << "[traces] " << t.string("name") << "\n";
  }
  run_trace_experiments(manifest, manifest_path.string(), fs::path(SPECONTEXT_SOURCE_DIR), out);
  if (f.no_figures) return;
  const fs::path script = fs::path(SPECONTEXT_SOURCE_DIR) / "analysis" / "make_figures.py";
  const std::string cmd = python() + " '" + script.string() + "' '" + out.string() + "'";
  std::cerr << "[analysis] " << cmd << "\n";
  if (std::system(cmd.c_str()) != 0)
    throw ConfigError(script.string(), "", "the analysis failed (it needs Debian's python3-matplotlib; set SPECONTEXT_PYTHON to another interpreter)");
  std::cout << (out / "report.md").string() << "\n";
}

}  // namespace

void add_reproduce_command(CLI::App& app) {
  auto f = std::make_shared<ReproduceFlags>();
  CLI::App* cmd = app.add_subcommand("reproduce", "run the shipped experiments and write CSVs, plans, traces, figures and report.md");
  cmd->add_option("--out", f->out, "output folder")->required();
  cmd->add_option("--manifest", f->manifest, "what to run (default configs/reproduce.json)");
  cmd->add_option("--threads", f->threads, "worker threads (0: one per core)")->capture_default_str();
  cmd->add_flag("--no-figures", f->no_figures, "skip the Python figures and report");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
