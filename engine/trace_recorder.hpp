#pragma once
// Records attention traces (traces/FORMAT.md, traces/trace_file.hpp) on either backend: a dense,
// greedy run of each prompt (so every policy is judged against the same trajectory, as the paper's
// Tables 1–2 are), and at each decode step, beside the LLM's own attention at every layer and KV
// head, the ranking each recorded policy would have used:
//   streaming          0, 1, 2, 3, then t, t - 1, ... (its budget-B set is the ranking's first B);
//   quest              per layer and KV head, pages of 16 by their bound on q.k (engine/quest_selection.hpp),
//                      best first, each page's positions in order (page_size 16);
//   specontext         the retrieval head's scores per KV head (engine/retrieval_head.hpp), pooled as the head
//                      is configured (--head-pool / --head-recent), best first;
//   specontext-batch   the same over all heads (the max), one ranking.
// The oracle needs no ranking: it is the LLM's attention itself (sim/trace_replay.hpp ranks it).
// Rankings hold b_max positions (quest: ceil(b_max / 16) pages); the attention list holds the top
// b_max positions by probability plus every ranked position and t, so a replay's mass is exact.
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/attention_probe.hpp"
#include "engine/model_config.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/selection_policy.hpp"
#include "traces/trace_file.hpp"

namespace specontext {

struct TraceRecordOptions {
  std::vector<SelectionPolicy> policies;  // streaming, quest, specontext, specontext-batch (oracle and full are implicit)
  std::int64_t b_max = 1024;
  int max_new = 8;  // decode steps per prompt
};

// How a recorded policy's rankings are laid out (per layer or shared, per KV head or batch-level, pages).
// std::invalid_argument for full and oracle, which are not recorded as rankings.
traces::TracePolicy trace_policy(SelectionPolicy policy);

// The header fields the recording itself decides: the model's shape, b_max, max_new, the policies'
// layouts, the prompt count and the longest prompt. The caller names the model, draft, task, source,
// backend and config hash.
traces::TraceHeader trace_header(const ModelConfig& config, const TraceRecordOptions& o, const std::vector<std::vector<int>>& prompts);

// Positions 0..n-1 by score, best first (ties: the lower position), the first `limit` of them.
std::vector<std::int32_t> rank_positions(const float* scores, std::int64_t n, std::int64_t limit);

// StreamingLLM's ranking over positions 0..t: the 4 sinks, then t, t - 1, ...; the first `limit`.
std::vector<std::int32_t> streaming_ranking(std::int64_t positions, std::int64_t limit);

// Quest's ranking of one KV head from its page scores (quest_page_scores' row): pages best first
// (ties: the lower page), expanded to their positions below `positions`; ceil(limit / 16) pages.
std::vector<std::int32_t> quest_ranking(const float* page_scores, std::int64_t positions, std::int64_t limit);

// What the recorder needs of an LLM backend: CpuBackend and CudaBackend both have these members
// (dense prefill and probed decode of request 0, the residual streams the retrieval head reads);
// Recordable<Backend> adapts either.
class RecordableLlm {
 public:
  virtual ~RecordableLlm() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::int64_t max_context() const = 0;
  virtual std::int64_t length(int request) const = 0;
  virtual void reset(int request) = 0;
  virtual std::vector<float> prefill(int request, const std::vector<int>& tokens) = 0;
  virtual std::vector<float> decode_probed(int request, int token, AttentionProbe& probe) = 0;
  virtual void set_feature_layers(std::vector<int> layers) = 0;
  virtual const std::vector<float>& features(int request) const = 0;
  virtual std::int64_t feature_width() const = 0;
};

template <class Backend>
class Recordable final : public RecordableLlm {
 public:
  explicit Recordable(Backend& b) : b_(b) {}
  const ModelConfig& config() const override { return b_.config(); }
  std::int64_t max_context() const override { return b_.max_context(); }
  std::int64_t length(int request) const override { return b_.length(request); }
  void reset(int request) override { b_.reset(request); }
  std::vector<float> prefill(int request, const std::vector<int>& tokens) override { return b_.prefill(request, tokens); }
  std::vector<float> decode_probed(int request, int token, AttentionProbe& probe) override { return b_.decode_probed(request, token, probe); }
  void set_feature_layers(std::vector<int> layers) override { b_.set_feature_layers(std::move(layers)); }
  const std::vector<float>& features(int request) const override { return b_.features(request); }
  std::int64_t feature_width() const override { return b_.feature_width(); }

 private:
  Backend& b_;
};

// Runs every prompt through `llm` (request 0, reset first) densely and greedily for o.max_new steps,
// writing one record per step (request = the prompt's index). `head` is needed for specontext*
// (its aux layers become the LLM's feature layers). Returns the records written.
std::int64_t record_traces(RecordableLlm& llm, RetrievalHeadCpu* head, const std::vector<std::vector<int>>& prompts, const TraceRecordOptions& o,
                           traces::TraceWriter& out, const std::function<void(int done, int total)>& progress = {});

}  // namespace specontext
