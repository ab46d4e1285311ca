#pragma once
// Replays an attention trace (traces/trace_file.hpp) at chosen KV budgets: for every recorded
// selection policy, and the oracle, how much of the LLM's attention a budget-B selection captures
// (recall), how much adjacent decode steps' selections share (overlap), and, for a target model,
// how many bytes elastic loading would move per step. Budgets, policies and hardware can then be
// swept without re-running the model (`specontext replay`, `specontext sim --overlap-from`).
//
// Definitions (per record = one decode step of one request, per layer, per KV head):
//   S      the policy's ranking for (layer, head) — TracePolicy says which list applies: a
//          batch-level ranking applies to every head, a shared one to every layer — cut to its
//          first B positions (paged policies: its first ceil(B / page_size) * page_size positions,
//          i.e. whole pages in rank order; fewer if the ranking is shorter), plus t (the record's
//          position) when absent, since the engine always attends t. The oracle's ranking is the
//          attention list itself (sorted by probability): the LLM's own top-B at that layer and head.
//          The shared oracle (ReplayOptions::shared_oracle) ranks, per KV head, the positions by
//          their attention summed over the layers and applies that one ranking to every layer: the
//          best a selection shared by all layers can do (SpeContext's retrieval head chooses one
//          set per step for every layer), so oracle - shared oracle is what sharing costs and
//          shared oracle - specontext what the head misses. A layer's attention outside its
//          recorded list counts 0 in the sum and in the recall (a lower bound, tight when b_max is
//          well above B).
//   recall the attention mass over S (positions absent from the attention list count 0); per step
//          the mean over layers and KV heads; spread over steps; per layer the mean over steps and heads.
//   overlap per request, for each step and the same request's previous step, |S_now ∩ S_prev| / |S_now|
//          with S as the policy chose it (WITHOUT the appended t; 1 for an empty selection, as the
//          engine's OverlapMeter), mean over (layer, head), then over every such pair of steps.
//   selected   mean |S| per (layer, head), t included.
//   load_bytes_per_step   scaled from the trace's overlap: every layer of the target offloaded, per
//          request per step: (1 - overlap) * B_eff * kv_heads * layers * 2 (K and V) * head_dim * 2
//          (bf16), B_eff = min(B, mean |S| without t). The target's shape, not the traced model's.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sim/model_shape.hpp"
#include "traces/trace_file.hpp"

namespace specontext {

struct ReplayOptions {
  std::vector<std::int64_t> budgets;  // each in [1, b_max]; replayed ascending, duplicates once
  const ModelShape* target = nullptr;  // with one: load_bytes_per_step
  bool shared_oracle = false;  // also replay kSharedOraclePolicy (after the oracle)
};

struct Spread {
  double mean = 0, min = 0, max = 0, p10 = 0, p90 = 0;  // p10/p90: linear interpolation of the sorted values
};

struct ReplayResult {
  std::string policy;
  std::int64_t budget = 0;
  Spread recall;                      // attention mass captured, over steps (each step: mean over layers and KV heads)
  std::vector<double> recall_per_layer;
  std::optional<double> overlap;      // adjacent steps of the same request; nullopt when no request has 2 steps
  double selected = 0;                // mean positions selected per (layer, KV head), t included
  std::optional<double> load_bytes_per_step;  // with a target (and an overlap): elastic loading per request per step
};

// The name under which the LLM's own top-B is replayed (first, unless the header records a policy
// of that name, which is then replayed in its place in header order).
inline constexpr const char* kOraclePolicy = "oracle";
inline constexpr const char* kSharedOraclePolicy = "oracle-shared";

// Every policy (the oracle first, the shared oracle when asked, then the header's order), each budget ascending. Throws
// ConfigError("--budgets", ...) for a budget outside [1, b_max] or no budgets, and ConfigError for a
// trace without records.
std::vector<ReplayResult> replay_trace(const traces::Trace& t, const ReplayOptions& o);

// The overlap of one policy ("oracle" or a recorded one) at one budget, for the simulator. Throws
// ConfigError naming the policy (and listing the recorded ones) when it is not recorded, naming
// --budget when the budget is outside [1, b_max], and when no request has 2 decode steps.
double trace_overlap(const traces::Trace& t, const std::string& policy, std::int64_t budget);

nlohmann::json to_json(const ReplayResult& r);

// Powers of two from 16 up to b_max, and b_max itself (the replay's default sweep).
std::vector<std::int64_t> default_replay_budgets(std::int64_t b_max);

// What `specontext replay --json` prints (and `reproduce` writes): {"trace": the header, "file",
// "target" (null without), "results": [to_json of each]}.
nlohmann::json replay_report_json(const traces::Trace& t, const std::string& file, const ModelShape* target, const std::vector<ReplayResult>& results);

}  // namespace specontext
