#pragma once
// Runs long-context task instances (long_context_tasks.hpp) on a Backend and scores them,
// backend.max_requests() instances at a time.
//   Answer tasks go through the decode loop (generator.hpp): greedy, up to max_new tokens or EOS;
//   the decoded text is scored by answer_correct.
//   Perplexity and fidelity prefill the prompt and then force their tokens one decode step at a
//   time, because sparse-attention policies act in decode only: perplexity accumulates each forced
//   token's NLL, fidelity counts the steps whose greedy argmax is the forced (dense) token.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/tokenizer.hpp"

namespace specontext {

struct EvalOptions {
  int max_new = 8;                 // answer tasks
  std::vector<int> eos_token_ids;  // answer tasks stop at these
  std::function<void(int done, int total)> progress;  // called after each batch of instances
};

struct EvalTiming {
  double prefill_s = 0, decode_s = 0;
  std::int64_t prefill_tokens = 0;
  std::int64_t decode_steps = 0;   // batched steps
  std::int64_t decode_tokens = 0;  // tokens those steps appended, over all requests
};

struct TrialResult {
  int trial = 0;
  double value = 0;  // the trial's metric: 1 or 0 (answer tasks), perplexity, or agreement
  // answer tasks
  std::vector<int> output;
  std::string output_text;
  bool correct = false;
  // perplexity: natural-log NLL summed over the forced tokens
  double nll_sum = 0;
  std::int64_t scored = 0;
  // fidelity
  std::int64_t matches = 0;
  std::int64_t first_disagreement = -1;  // index into forced, -1 where every step agrees
};

struct MetricSummary {
  double mean = 0, median = 0, min = 0, max = 0;
};
MetricSummary summarize(std::vector<double> values);

struct EvalResult {
  TaskKind kind = TaskKind::Passkey;
  std::vector<TrialResult> trials;
  MetricSummary summary;  // of the trials' values; for answer tasks the mean is the accuracy
  // perplexity, pooled over every forced token of every trial
  double mean_nll = 0, pooled_perplexity = 0;
  EvalTiming timing;
};

// "accuracy", "perplexity" or "agreement".
const char* metric_name(TaskKind kind);

// Fidelity's reference: each instance's `generate` greedy tokens from the dense backend (past
// EOS), stored as its forced tokens.
EvalTiming make_fidelity_references(Backend& dense, std::vector<TaskInstance>& instances, const EvalOptions& options);

// Scores `instances` of task `kind` on `backend`. Answer tasks need the tokenizer (to read the
// answers); the others take nullptr. Every instance must fit backend.max_context().
EvalResult evaluate(Backend& backend, TaskKind kind, const std::vector<TaskInstance>& instances, const Tokenizer* tokenizer,
                    const EvalOptions& options);

}  // namespace specontext
