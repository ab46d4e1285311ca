#pragma once
// The attention-trace part of `specontext reproduce` (configs/reproduce.json):
//   "attention_traces": [{"name", "file" (relative to the source tree), "target" (model config for
//       the bytes column, default llama-3.1-8b)}]  -> DIR/attention/NAME.replay.json, the replay
//       (sim/trace_replay.hpp) at its default budgets;
//   "trace_sims": [{"trace" (a name above), "policies": [{"policy", "system", "components"?}],
//       "targets": [{"hw", "model", "draft"?, "gpu_memory_bytes"?}], "in", "out", "requests"
//       ("best" or a count), "budgets": [...]}]  -> DIR/csv/trace-sims.csv: each target simulated at
//       each budget with the trace's measured overlap (and recall) for that policy, read at the same
//       fraction of the context (trace_budget = budget x the trace's mean context / the workload's
//       mean context, clamped to 1..b_max), since the trace comes from a smaller model at a
//       shorter context than the paper's workloads;
//   "accuracy": ["bench/results/...json", ...]  -> copied to DIR/accuracy/ (measured accuracy of
//       the engine's real sparse runs, for the Pareto figures);
//   "measured_timelines": ["bench/results/...side_by_side.trace.json", ...]  -> copied to
//       DIR/measured/ (a decode step measured on the GPU beside the simulator's prediction of it,
//       bench/trace_side_by_side.py);
//   "engine_pareto": ["bench/results/...engine_pareto.json", ...]  -> copied to DIR/engine/ (the
//       engine's measured throughput per policy x budget, bench/pareto_engine.sh, paired with the
//       accuracy files for the measured Pareto fronts).
// Every missing or malformed entry is a ConfigError naming the manifest and the field.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace specontext::cli {

void run_trace_experiments(const nlohmann::json& manifest, const std::string& origin, const std::filesystem::path& source_dir,
                           const std::filesystem::path& out);

}  // namespace specontext::cli
