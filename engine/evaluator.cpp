#include "engine/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "engine/generator.hpp"
#include "engine/sampling.hpp"
#include "engine/tokenizer.hpp"

namespace specontext {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Runs batches of at most max_requests instances (they become requests 0, 1, ...):
// run(batch, first) with batch[i] = &instances[first + i], then reports progress.
void in_batches(const Backend& backend, const std::vector<TaskInstance>& instances, const EvalOptions& options,
                const std::function<void(const std::vector<const TaskInstance*>&, std::size_t)>& run) {
  const std::size_t size = static_cast<std::size_t>(backend.max_requests());
  for (std::size_t first = 0; first < instances.size(); first += size) {
    std::vector<const TaskInstance*> batch;
    for (std::size_t i = first; i < std::min(first + size, instances.size()); ++i) batch.push_back(&instances[i]);
    run(batch, first);
    if (options.progress) options.progress(static_cast<int>(first + batch.size()), static_cast<int>(instances.size()));
  }
}

// Greedy generation for a batch, through the decode loop.
GenerateResult generate_batch(Backend& backend, const std::vector<const TaskInstance*>& batch, int max_new, bool stop_at_eos,
                              const std::vector<int>& eos, EvalTiming& timing) {
  std::vector<std::vector<int>> prompts;
  for (const TaskInstance* inst : batch) prompts.push_back(inst->prompt);
  GenerateOptions o;
  o.max_new = max_new;
  o.stop_at_eos = stop_at_eos;
  o.eos_token_ids = eos;
  GenerateResult r = generate(backend, prompts, o);
  timing.prefill_s += r.prefill_s;
  timing.decode_s += r.decode_s;
  for (const auto& p : prompts) timing.prefill_tokens += static_cast<std::int64_t>(p.size());
  timing.decode_steps += r.decode_steps;
  timing.decode_tokens += r.generated() - static_cast<long long>(batch.size());
  return r;
}

// Prefills each prompt of the batch, then feeds its forced tokens one decode step at a time (the
// batch together); score(i, j, logits) gets the logits [vocab] that predict batch[i]'s forced[j].
void teacher_force(Backend& backend, const std::vector<const TaskInstance*>& batch,
                   const std::function<void(std::size_t, std::size_t, const float*)>& score, EvalTiming& timing) {
  std::size_t longest = 0;
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const int request = static_cast<int>(i);
    backend.reset(request);
    const std::vector<float> logits = backend.prefill(request, batch[i]->prompt);
    timing.prefill_tokens += static_cast<std::int64_t>(batch[i]->prompt.size());
    if (!batch[i]->forced.empty()) score(i, 0, logits.data());
    longest = std::max(longest, batch[i]->forced.size());
  }
  timing.prefill_s += seconds_since(t0);
  const auto t1 = Clock::now();
  for (std::size_t j = 1; j < longest; ++j) {
    std::vector<int> requests, tokens;
    for (std::size_t i = 0; i < batch.size(); ++i)
      if (j < batch[i]->forced.size()) {
        requests.push_back(static_cast<int>(i));
        tokens.push_back(batch[i]->forced[j - 1]);
      }
    const std::vector<float> logits = backend.decode(requests, tokens);
    ++timing.decode_steps;
    timing.decode_tokens += static_cast<std::int64_t>(requests.size());
    for (std::size_t k = 0; k < requests.size(); ++k) score(static_cast<std::size_t>(requests[k]), j, logits.data() + k * backend.vocab());
  }
  timing.decode_s += seconds_since(t1);
}

// -log softmax(logits)[target], in double.
double nll(const float* logits, std::int64_t vocab, int target) {
  const double top = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - top);
  return std::log(sum) + top - static_cast<double>(logits[target]);
}

// Ids the tokenizer knows: a model's vocabulary may be padded past the tokenizer's, and like Hugging
// Face's decode we read the ids beyond it as no text.
std::vector<int> known_ids(const Tokenizer& tokenizer, std::vector<int> ids) {
  ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int id) { return id >= tokenizer.vocab_size(); }), ids.end());
  return ids;
}

}  // namespace

MetricSummary summarize(std::vector<double> values) {
  MetricSummary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  const std::size_t n = values.size();
  s.mean = sum / static_cast<double>(n);
  s.median = n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
  s.min = values.front();
  s.max = values.back();
  return s;
}

const char* metric_name(TaskKind kind) {
  if (is_answer_task(kind)) return "accuracy";
  return kind == TaskKind::Perplexity ? "perplexity" : "agreement";
}

EvalTiming make_fidelity_references(Backend& dense, std::vector<TaskInstance>& instances, const EvalOptions& options) {
  EvalTiming timing;
  in_batches(dense, instances, options, [&](const std::vector<const TaskInstance*>& batch, std::size_t first) {
    for (const TaskInstance* inst : batch)
      if (inst->generate != batch.front()->generate) throw std::invalid_argument("make_fidelity_references: instances of one batch differ in length");
    const GenerateResult r = generate_batch(dense, batch, static_cast<int>(batch.front()->generate), false, {}, timing);
    for (std::size_t i = 0; i < batch.size(); ++i) instances[first + i].forced = r.tokens[i];
  });
  return timing;
}

EvalResult evaluate(Backend& backend, TaskKind kind, const std::vector<TaskInstance>& instances, const Tokenizer* tokenizer,
                    const EvalOptions& options) {
  if (is_answer_task(kind) && !tokenizer) throw std::invalid_argument("evaluate: answer tasks need the tokenizer");
  for (const TaskInstance& inst : instances) {
    if (!is_answer_task(kind) && inst.forced.empty())
      throw std::invalid_argument("evaluate: trial " + std::to_string(inst.trial) + " has no forced tokens (fidelity: make_fidelity_references first)");
    const std::int64_t needed = static_cast<std::int64_t>(inst.prompt.size() + inst.forced.size()) + (is_answer_task(kind) ? options.max_new : 0);
    if (needed > backend.max_context())
      throw std::invalid_argument("evaluate: trial " + std::to_string(inst.trial) + " needs a context of " + std::to_string(needed) +
                                  " tokens, the backend holds " + std::to_string(backend.max_context()));
  }
  EvalResult result;
  result.kind = kind;
  const std::int64_t vocab = backend.vocab();
  in_batches(backend, instances, options, [&](const std::vector<const TaskInstance*>& view, std::size_t) {
    std::vector<TrialResult> trials(view.size());
    for (std::size_t i = 0; i < view.size(); ++i) trials[i].trial = view[i]->trial;
    if (is_answer_task(kind)) {
      const GenerateResult r = generate_batch(backend, view, options.max_new, true, options.eos_token_ids, result.timing);
      for (std::size_t i = 0; i < view.size(); ++i) {
        trials[i].output = r.tokens[i];
        trials[i].output_text = tokenizer->decode(known_ids(*tokenizer, r.tokens[i]), true);
        trials[i].correct = answer_correct(trials[i].output_text, view[i]->answer);
        trials[i].value = trials[i].correct ? 1.0 : 0.0;
      }
    } else if (kind == TaskKind::Perplexity) {
      teacher_force(
          backend, view,
          [&](std::size_t i, std::size_t j, const float* logits) {
            trials[i].nll_sum += nll(logits, vocab, view[i]->forced[j]);
            ++trials[i].scored;
          },
          result.timing);
      for (TrialResult& t : trials) t.value = std::exp(t.nll_sum / static_cast<double>(t.scored));
    } else {
      teacher_force(
          backend, view,
          [&](std::size_t i, std::size_t j, const float* logits) {
            if (sample_token(logits, vocab, SamplingParams{}, 0.0) == view[i]->forced[j]) ++trials[i].matches;
            else if (trials[i].first_disagreement < 0) trials[i].first_disagreement = static_cast<std::int64_t>(j);
          },
          result.timing);
      for (std::size_t i = 0; i < view.size(); ++i) trials[i].value = static_cast<double>(trials[i].matches) / static_cast<double>(view[i]->forced.size());
    }
    result.trials.insert(result.trials.end(), trials.begin(), trials.end());
  });

  std::vector<double> values;
  double nll_sum = 0;
  std::int64_t scored = 0;
  for (const TrialResult& t : result.trials) {
    values.push_back(t.value);
    nll_sum += t.nll_sum;
    scored += t.scored;
  }
  result.summary = summarize(values);
  if (scored > 0) {
    result.mean_nll = nll_sum / static_cast<double>(scored);
    result.pooled_perplexity = std::exp(result.mean_nll);
  }
  return result;
}

}  // namespace specontext
