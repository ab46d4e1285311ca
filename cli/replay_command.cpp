// specontext replay FILE: sweeps KV budgets over an attention trace (traces/trace_file.hpp) without
// re-running the model: per recorded policy (and the oracle, the LLM's own top-B) and budget, the
// attention mass the selection captures (recall), adjacent steps' overlap, positions selected, and
// the bytes elastic loading would move per step for a target model (sim/trace_replay.hpp).
//
// --budgets 64,128,256   default: powers of two from 16 up to the trace's b_max, and b_max itself.
// --target NAME|PATH     model config for the bytes column (default llama-3.1-8b); "none": no bytes.
// --oracle-shared        also the best one set per KV head shared by every layer (sim/trace_replay.hpp).
// --json prints {"trace": the header, "file", "target" (null with none), "results": [{"policy",
//   "budget", "recall": {"mean", "min", "max", "p10", "p90", "per_layer"}, "overlap" (null when no
//   request has 2 steps), "selected", "load_bytes_per_step" (null without a target)}]}.
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "sim/config_error.hpp"
#include "sim/model_shape.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/trace_replay.hpp"
#include "traces/trace_file.hpp"

namespace specontext::cli {
namespace {

struct ReplayFlags {
  std::string file, budgets, target = "llama-3.1-8b";
  bool json = false, oracle_shared = false;
};

// "64,128,256" -> integers; the range is checked against the trace by replay_trace.
std::vector<std::int64_t> parse_budgets(const std::string& text) {
  std::vector<std::int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw ConfigError("--budgets", "", "expected comma-separated integers, got '" + item + "'");
    }
  }
  if (out.empty()) throw ConfigError("--budgets", "", "no values given");
  return out;
}

std::string describe(const traces::TracePolicy& p) {
  std::string s = std::string(p.per_layer ? "a ranking per layer" : "one ranking for every layer") + ", " +
                  (p.head_level ? "per KV head" : "batch-level (one for every KV head)");
  if (p.page_size > 1) s += ", pages of " + std::to_string(p.page_size);
  return s;
}

std::string pad_left(const std::string& s, std::size_t width) { return s.size() >= width ? s : std::string(width - s.size(), ' ') + s; }
std::string pad_right(const std::string& s, std::size_t width) { return s.size() >= width ? s : s + std::string(width - s.size(), ' '); }

void print_tables(const traces::Trace& t, const std::string& file, const ModelShape* target, const std::vector<ReplayResult>& results) {
  const auto& h = t.header;
  std::cout << "trace " << file << ": " << h.model << (h.draft.empty() ? "" : " (draft " + h.draft + ")") << ", " << h.layers << " layers x "
            << h.kv_heads << " KV heads, task " << h.task << ", " << h.requests << " requests, " << t.steps.size() << " decode steps, b_max "
            << h.b_max << "\n";
  std::string current;
  for (const auto& r : results) {
    if (r.policy != current) {
      current = r.policy;
      std::string what = r.policy == kSharedOraclePolicy ? "per KV head, the top-B of the LLM's attention summed over the layers, shared by every layer"
                                                         : "the LLM's own top-B per layer and KV head";
      for (const auto& p : h.policies)
        if (p.name == r.policy) what = describe(p);
      std::cout << "\n" << r.policy << ": " << what << "\n"
                << "   budget  recall mean (min-max)    overlap  selected" << (target ? "  MB to load per step" : "") << "\n";
    }
    std::cout << pad_left(std::to_string(r.budget), 9) << "  "
              << pad_right(fixed(r.recall.mean, 3) + " (" + fixed(r.recall.min, 3) + "-" + fixed(r.recall.max, 3) + ")", 23)
              << pad_left(r.overlap ? fixed(*r.overlap, 3) : "-", 9) << pad_left(fixed(r.selected, 1), 10);
    if (target) std::cout << pad_left(r.load_bytes_per_step ? fixed(*r.load_bytes_per_step / 1e6, 2) : "-", 21);
    std::cout << "\n";
  }
  if (target)
    std::cout << "\nMB to load per step: scaled from the trace's overlap: every layer of " << target->name
              << " offloaded, per request per step ((1 - overlap) x min(B, selected) x K and V of every layer, bf16)\n";
}

}  // namespace

void add_replay_command(CLI::App& app) {
  auto f = std::make_shared<ReplayFlags>();
  CLI::App* cmd = app.add_subcommand("replay", "sweep KV budgets over an attention trace: recall, overlap and bytes to load per policy");
  cmd->add_option("FILE", f->file, "attention trace (traces/FORMAT.md)")->required();
  cmd->add_option("--budgets", f->budgets, "comma-separated KV budgets in 1..b_max (default: powers of two from 16 to the trace's b_max)");
  cmd->add_option("--target", f->target, "model config for the bytes to load: a name in configs/models/ or a path; 'none' for no bytes")
      ->capture_default_str();
  cmd->add_flag("--oracle-shared", f->oracle_shared,
                "also replay the best set shared by every layer (per KV head, the top-B of the attention summed over the layers)");
  cmd->add_flag("--json", f->json, "print JSON instead of tables");
  cmd->callback([f]() {
    // The target first: a bad name fails before a long trace is read.
    std::optional<ModelShape> target;
    if (f->target != "none") target = specontext::load_model_config(resolve_config(f->target, "models"));
    const traces::Trace t = traces::read_trace(f->file);
    if (t.steps.empty()) throw ConfigError(f->file, "", "the trace holds no decode steps: nothing to replay");
    ReplayOptions o;
    o.budgets = f->budgets.empty() ? default_replay_budgets(t.header.b_max) : parse_budgets(f->budgets);
    o.target = target ? &*target : nullptr;
    o.shared_oracle = f->oracle_shared;
    const auto results = replay_trace(t, o);
    if (f->json) {
      std::cout << replay_report_json(t, f->file, o.target, results).dump(2) << "\n";
    } else {
      print_tables(t, f->file, o.target, results);
    }
  });
}

}  // namespace specontext::cli
