// The evaluator: perplexity from decode steps equals the NLL computed by hand from one prefill's
// logits (CpuBackend::prefill_all_logits, an independent path) on a tiny random-weight model;
// fidelity of policy full against its own dense reference is 1 by construction, and a reference
// token changed on purpose is caught where it was changed (so both runs are real); answers are read
// from the decoded greedy output, in batches, stopping at EOS.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "engine/cpu_backend.hpp"
#include "engine/evaluator.hpp"
#include "engine/generator.hpp"
#include "engine/safetensors.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/temp_dir.hpp"

namespace specontext {
namespace {

using testing::TempDir;

using testing::random_tokens;

const testing::TinyModel& tiny() { return testing::tiny_llama_gqa(); }

TaskInstance window(int trial, const std::vector<int>& tokens, std::size_t prefix) {
  TaskInstance inst;
  inst.trial = trial;
  inst.prompt.assign(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(prefix));
  inst.forced.assign(tokens.begin() + static_cast<std::ptrdiff_t>(prefix), tokens.end());
  return inst;
}

TEST(Evaluator, PerplexityFromDecodeStepsMatchesOnePrefillsLogits) {
  // Two windows of different lengths in one batch, so decode steps shrink from two requests to one.
  const std::vector<int> a = random_tokens(1, 40), b = random_tokens(2, 33);
  const std::vector<TaskInstance> instances = {window(0, a, 10), window(1, b, 20)};
  CpuBackend backend(tiny().config, tiny().weights, 2, 64);
  const EvalResult r = evaluate(backend, TaskKind::Perplexity, instances, nullptr, {});
  ASSERT_EQ(r.trials.size(), 2u);

  CpuBackend reference(tiny().config, tiny().weights, 1, 64);
  const std::int64_t vocab = tiny().config.shape.vocab;
  double pooled = 0;
  for (std::size_t i = 0; i < 2; ++i) {
    const std::vector<int>& tokens = i == 0 ? a : b;
    const std::size_t prefix = instances[i].prompt.size();
    reference.reset(0);
    const std::vector<float> logits = reference.prefill_all_logits(0, tokens);
    // NLL of token p + 1 from position p's logits: log sum exp - the token's logit (the fixture's
    // logits reach the hundreds, so exp is taken relative to the row's largest)
    double nll = 0;
    for (std::size_t p = prefix - 1; p + 1 < tokens.size(); ++p) {
      const float* row = logits.data() + static_cast<std::int64_t>(p) * vocab;
      const double top = *std::max_element(row, row + vocab);
      double sum = 0;
      for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - top);
      nll += top + std::log(sum) - row[tokens[p + 1]];
    }
    EXPECT_EQ(r.trials[i].scored, static_cast<std::int64_t>(tokens.size() - prefix));
    EXPECT_NEAR(r.trials[i].nll_sum, nll, 1e-4 * nll);
    EXPECT_NEAR(r.trials[i].value, std::exp(nll / static_cast<double>(r.trials[i].scored)), 1e-4 * r.trials[i].value);
    pooled += nll;
  }
  EXPECT_NEAR(r.mean_nll, pooled / (30 + 13), 1e-4 * r.mean_nll);
  EXPECT_NEAR(r.pooled_perplexity, std::exp(r.mean_nll), 1e-9);
  EXPECT_EQ(r.timing.prefill_tokens, 30);
  EXPECT_EQ(r.timing.decode_steps, 29);               // the longer window forces 30 tokens: 1 from the prefill
  EXPECT_EQ(r.timing.decode_tokens, 29 + 12);
}

TEST(Evaluator, FidelityOfFullIsOneAndAChangedTokenIsCaught) {
  std::vector<TaskInstance> instances(3);
  for (int t = 0; t < 3; ++t) {
    instances[static_cast<std::size_t>(t)].trial = t;
    instances[static_cast<std::size_t>(t)].prompt = random_tokens(10 + t, 12 + t);
    instances[static_cast<std::size_t>(t)].generate = 20;
  }
  CpuBackend backend(tiny().config, tiny().weights, 2, 64);
  make_fidelity_references(backend, instances, {});
  GenerateOptions greedy;
  greedy.max_new = 20;
  greedy.stop_at_eos = false;
  for (const TaskInstance& inst : instances) EXPECT_EQ(inst.forced, generate(backend, {inst.prompt}, greedy).tokens[0]);

  // Today the policy under test is full, the dense model itself: agreement 1 by construction.
  EvalResult r = evaluate(backend, TaskKind::Fidelity, instances, nullptr, {});
  for (const TrialResult& t : r.trials) {
    EXPECT_EQ(t.value, 1.0);
    EXPECT_EQ(t.matches, 20);
    EXPECT_EQ(t.first_disagreement, -1);
  }
  EXPECT_EQ(r.summary.min, 1.0);

  instances[1].forced[5] = (instances[1].forced[5] + 1) % 512;
  r = evaluate(backend, TaskKind::Fidelity, instances, nullptr, {});
  EXPECT_EQ(r.trials[1].first_disagreement, 5);
  EXPECT_LT(r.trials[1].value, 1.0);
  EXPECT_EQ(r.trials[0].value, 1.0);
  EXPECT_EQ(r.trials[2].value, 1.0);
}

// A backend whose greedy output is a script per prompt: its logits put the next scripted token
// (EOS after the script) first.
class ScriptedBackend final : public Backend {
 public:
  ScriptedBackend(std::map<std::vector<int>, std::vector<int>> scripts, int eos) : scripts_(std::move(scripts)), eos_(eos) {}
  std::int64_t vocab() const override { return 512; }
  std::int64_t max_requests() const override { return 2; }
  std::int64_t max_context() const override { return 4096; }
  void reset(int r) override { state_[r] = {}; }
  std::vector<float> prefill(int r, const std::vector<int>& tokens) override {
    state_[r] = {&scripts_.at(tokens), static_cast<std::int64_t>(tokens.size()), 0};
    return next(r);
  }
  std::vector<float> decode(const std::vector<int>& requests, const std::vector<int>&) override {
    std::vector<float> logits;
    for (int r : requests) {
      ++state_[r].length;
      ++state_[r].step;
      const std::vector<float> one = next(r);
      logits.insert(logits.end(), one.begin(), one.end());
    }
    return logits;
  }
  std::int64_t length(int r) const override { return state_.at(r).length; }

 private:
  struct State {
    const std::vector<int>* script = nullptr;
    std::int64_t length = 0;
    std::size_t step = 0;
  };
  std::vector<float> next(int r) const {
    const State& s = state_.at(r);
    std::vector<float> logits(512, 0.0f);
    logits[static_cast<std::size_t>(s.step < s.script->size() ? (*s.script)[s.step] : eos_)] = 1.0f;
    return logits;
  }
  std::map<std::vector<int>, std::vector<int>> scripts_;
  int eos_;
  std::map<int, State> state_;
};

TEST(Evaluator, AnswersAreTheFirstNumberOfTheGreedyOutput) {
  const TempDir dir("byte-tokenizer");
  const Tokenizer tok = testing::byte_tokenizer(dir.path());
  std::vector<TaskInstance> instances(3);
  const std::vector<std::pair<std::string, std::string>> cases = {{"71432", " 71432. Remember"}, {"12345", " 1234"}, {"55555", " 55555 is the key"}};
  std::map<std::vector<int>, std::vector<int>> scripts;
  for (std::size_t i = 0; i < 3; ++i) {
    instances[i].trial = static_cast<int>(i);
    instances[i].prompt = tok.encode("prompt " + std::to_string(i));
    instances[i].answer = cases[i].first;
    scripts[instances[i].prompt] = tok.encode(cases[i].second);
  }
  ScriptedBackend backend(scripts, tok.eos_id());
  EvalOptions o;
  o.max_new = 8;
  o.eos_token_ids = {tok.eos_id()};
  std::vector<std::pair<int, int>> progress;
  o.progress = [&](int done, int total) { progress.emplace_back(done, total); };
  const EvalResult r = evaluate(backend, TaskKind::Passkey, instances, &tok, o);
  ASSERT_EQ(r.trials.size(), 3u);
  EXPECT_EQ(r.trials[0].output_text, " 71432. ");  // 8 tokens
  EXPECT_TRUE(r.trials[0].correct);
  EXPECT_EQ(r.trials[1].output_text, " 1234");  // stopped at EOS, which the text leaves out
  EXPECT_EQ(r.trials[1].output.back(), tok.eos_id());
  EXPECT_FALSE(r.trials[1].correct);
  EXPECT_TRUE(r.trials[2].correct);
  EXPECT_NEAR(r.summary.mean, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(progress, (std::vector<std::pair<int, int>>{{2, 3}, {3, 3}}));  // two batches of at most 2
  EXPECT_THROW(evaluate(backend, TaskKind::Passkey, instances, nullptr, o), std::invalid_argument);
}

// Held-out text through the byte tokenizer into the tiny model: tasks and evaluator together.
TEST(Evaluator, TasksFromHeldoutTextRunOnTheCpuBackend) {
  const TempDir dir("eval");
  testing::write_heldout(dir.path() / "heldout", 200);
  const HeldoutCorpus corpus = HeldoutCorpus::load(dir.path() / "heldout");
  const Tokenizer tok = testing::byte_tokenizer(dir.path() / "tokenizer");
  CpuBackend backend(tiny().config, tiny().weights, 2, 512);

  TaskOptions o;
  o.kind = TaskKind::Perplexity;
  o.context = 256;
  o.trials = 2;
  const EvalResult ppl = evaluate(backend, o.kind, build_tasks(o, corpus, tok), nullptr, {});
  for (const TrialResult& t : ppl.trials) {
    EXPECT_EQ(t.scored, 128);
    EXPECT_TRUE(std::isfinite(t.value) && t.value > 1.0) << t.value;
  }
  EXPECT_EQ(ppl.timing.decode_steps, 127);
  EXPECT_EQ(ppl.timing.decode_tokens, 254);

  o.kind = TaskKind::Fidelity;
  o.generate = 16;
  std::vector<TaskInstance> fidelity = build_tasks(o, corpus, tok);
  make_fidelity_references(backend, fidelity, {});
  EXPECT_EQ(evaluate(backend, o.kind, fidelity, nullptr, {}).summary.min, 1.0);

  o.kind = TaskKind::Passkey;
  o.context = 512;
  const std::vector<TaskInstance> passkey = build_tasks(o, corpus, tok);
  EvalOptions eval;
  const EvalResult answers = evaluate(backend, o.kind, passkey, &tok, eval);  // random weights: any answer, but a real run
  EXPECT_EQ(answers.trials[0].output.size(), 8u);
  eval.max_new = 32;  // past the context the backend holds
  EXPECT_THROW(evaluate(backend, o.kind, passkey, &tok, eval), std::invalid_argument);
}

TEST(Evaluator, SummaryOfTrials) {
  const MetricSummary odd = summarize({3, 1, 2});
  EXPECT_EQ(odd.mean, 2);
  EXPECT_EQ(odd.median, 2);
  EXPECT_EQ(odd.min, 1);
  EXPECT_EQ(odd.max, 3);
  EXPECT_EQ(summarize({4, 1, 3, 2}).median, 2.5);
}

}  // namespace
}  // namespace specontext
