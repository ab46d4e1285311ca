// specontext eval: long-context tasks (passkey, multikey, vartrack, perplexity, fidelity) built
// from the held-out documents (engine/long_context_tasks.hpp) and scored on the CPU reference or
// the CUDA backend (engine/evaluator.hpp).
//
// --dump-tasks FILE writes the instances with their token ids for other engines; the schema is in
// engine/task_dump.hpp. For fidelity it is written after the dense reference has been generated,
// so the file holds it; for the other tasks, before the evaluation starts.
//
// --policy full|streaming|oracle|specontext|specontext-batch|quest with --budget B (engine/selection_policy.hpp)
// runs the decode steps under that KV selection (--backend cpu: engine/policy_backend.hpp; --backend
// cuda: engine/cuda_sparse_decode.cuh); prefill stays dense; specontext* need the distilled LM (--dlm
// DIR, an EAGLE-3 draft folder). Fidelity's dense reference is always the dense model.
//
// --head-input eagle|embed chooses what feeds the retrieval head (engine/retrieval_head.hpp).
// The draft's RoPE becomes YaRN where --context exceeds its max_position_embeddings
// (engine/eagle3_draft.hpp, extend_draft_context); JSON "dlm_rope" says which ("none" without a draft).
//
// --json prints {"task", "policy", "budget" (null for full), "dlm_rope", "overlap_rate" (mean over decode steps of
//   adjacent steps' selection overlap, paper Fig. 6b; null for full), "h2d_bytes_per_step" and "offloaded_layers"
//   (CUDA sparse policies: the offloaded layers' elastic loads per batched decode step and the layers in
//   host memory at the end; null otherwise), "attention_mass" (the mean share of each
//   query head's dense attention that the attended sets captured, paper Tables 1-2; null for full) and
//   "attention_mass_per_layer" (CUDA: GPU-resident layers only), "context", "model", "backend", "seed",
//   "max_new", "heldout", "metric", and by task:
//     answer tasks  "accuracy": fraction correct, "correct": count,
//     perplexity    "perplexity": {"mean", "median", "min", "max"} over trials, "pooled_perplexity"
//                   and "mean_nll" (nats, over every forced token),
//     fidelity      "agreement": {"mean", "median", "min", "max"} over trials,
//   "trials": [the instance as in the dump, without ids, plus
//     answer tasks  "output" (text), "output_ids", "correct";
//     perplexity    "scored", "mean_nll", "perplexity";
//     fidelity      "compared", "matches", "agreement", "first_disagreement" (-1: none)],
//   "timing": {"load_s", "build_s", "reference_s", "prefill_s", "decode_s", "prefill_tokens",
//              "decode_steps", "decode_tokens", "total_s", "prefill_cache" ({"dir", "hits", "misses"}, or null)}}.
//
// --prefill-cache DIR (CPU) keeps each prompt's prefilled state on disk (engine/prefill_cache.hpp):
// prefill is dense under every policy, so the runs of a sweep after the first restore it instead of
// recomputing it; results are the same, only prefill_s changes.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/model_loading.hpp"
#include "cli/policy_flags.hpp"
#include "engine/attention_mass.hpp"
#include "engine/evaluator.hpp"
#include "engine/heldout_corpus.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/policy_backend.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/selection_policy.hpp"
#include "engine/task_dump.hpp"
#include "engine/tokenizer.hpp"
#include "sim/config_error.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#endif

#ifndef SPECONTEXT_SOURCE_DIR
#define SPECONTEXT_SOURCE_DIR "."
#endif

namespace specontext::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct EvalFlags {
  std::string task, model, backend = "cpu", dump_tasks, prefill_cache;
  std::string heldout = (std::filesystem::path(SPECONTEXT_SOURCE_DIR) / "models" / "heldout").string();
  PolicyFlags sparse;
  int batch = 8;
  TaskOptions tasks;
  bool json = false, progress = false;
};

std::function<void(int, int)> progress_line(bool enabled, const std::string& what) {
  if (!enabled) return {};
  const auto t0 = Clock::now();
  return [what, t0](int done, int total) {
    std::cerr << "eval: " << what << " " << done << "/" << total << " trials (" << fixed(seconds_since(t0), 1) << " s)\n";
  };
}

nlohmann::json summary_json(const MetricSummary& s) { return {{"mean", s.mean}, {"median", s.median}, {"min", s.min}, {"max", s.max}}; }

nlohmann::json trial_json(TaskKind kind, const TaskInstance& inst, const TrialResult& t) {
  nlohmann::json j = instance_json(inst, kind, false);
  if (is_answer_task(kind)) {
    j["output"] = t.output_text;
    j["output_ids"] = t.output;
    j["correct"] = t.correct;
  } else if (kind == TaskKind::Perplexity) {
    j["scored"] = t.scored;
    j["mean_nll"] = t.nll_sum / static_cast<double>(t.scored);
    j["perplexity"] = t.value;
  } else {
    j["compared"] = inst.forced.size();
    j["matches"] = t.matches;
    j["agreement"] = t.value;
    j["first_disagreement"] = t.first_disagreement;
  }
  return j;
}

// A string as a short JSON literal, for one table cell.
std::string cell(const std::string& text, std::size_t width) {
  std::string s = nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > width) s = s.substr(0, width - 3) + "...";
  return s;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.resize(width, ' ');
  return s + " ";
}

void print_table(const EvalFlags& f, const std::vector<TaskInstance>& instances, const EvalResult& r) {
  const TaskKind kind = f.tasks.kind;
  std::cout << to_string(kind) << ": policy " << f.sparse.policy << ", context " << f.tasks.context << " tokens, " << instances.size() << " trials, seed "
            << f.tasks.seed << ", " << f.backend << "\nmodel " << f.model << "\n\n";
  if (is_answer_task(kind)) std::cout << "trial depth   at      tokens answer  output                          correct\n";
  else if (kind == TaskKind::Perplexity) std::cout << "trial tokens forced  mean NLL  perplexity  documents\n";
  else std::cout << "trial prompt generated agreement  first disagreement\n";
  for (std::size_t i = 0; i < instances.size(); ++i) {
    const TaskInstance& inst = instances[i];
    const TrialResult& t = r.trials[i];
    std::cout << pad(std::to_string(inst.trial), 5);
    if (is_answer_task(kind)) {
      // multikey and vartrack: the depth of the needle asked about (the chain's last link)
      const Needle& n = inst.needles[inst.asked >= 0 ? static_cast<std::size_t>(inst.asked) : inst.needles.size() - 1];
      std::cout << pad(fixed(n.depth, 2), 7) << pad(fixed(n.actual_depth, 3), 7) << pad(std::to_string(inst.prompt.size()), 6) << pad(inst.answer, 7)
                << pad(cell(t.output_text, 31), 31) << (t.correct ? "yes" : "no") << "\n";
    } else if (kind == TaskKind::Perplexity) {
      std::string docs;
      for (const std::string& d : inst.documents) docs += (docs.empty() ? "" : ", ") + d;
      std::cout << pad(std::to_string(inst.prompt.size()), 6) << pad(std::to_string(inst.forced.size()), 7)
                << pad(fixed(t.nll_sum / static_cast<double>(t.scored), 4), 9) << pad(fixed(t.value, 3), 11) << docs << "\n";
    } else {
      std::cout << pad(std::to_string(inst.prompt.size()), 6) << pad(std::to_string(inst.forced.size()), 9) << pad(fixed(t.value, 4), 10)
                << (t.first_disagreement < 0 ? std::string("none") : std::to_string(t.first_disagreement)) << "\n";
    }
  }
  const MetricSummary& s = r.summary;
  std::cout << "\n";
  if (is_answer_task(kind)) {
    std::cout << "accuracy " << fixed(s.mean * static_cast<double>(r.trials.size()), 0) << "/" << r.trials.size() << " = " << fixed(s.mean, 3) << "\n";
  } else if (kind == TaskKind::Perplexity) {
    std::cout << "perplexity mean " << fixed(s.mean, 3) << ", median " << fixed(s.median, 3) << ", min " << fixed(s.min, 3) << ", max "
              << fixed(s.max, 3) << "; pooled " << fixed(r.pooled_perplexity, 3) << " (mean NLL " << fixed(r.mean_nll, 4) << " nats)\n";
  } else {
    std::cout << "agreement mean " << fixed(s.mean, 4) << ", median " << fixed(s.median, 4) << ", min " << fixed(s.min, 4) << ", max " << fixed(s.max, 4)
              << (f.sparse.policy == "full" ? " (policy full against the dense reference: 1 by construction)" : " (against the dense reference)") << "\n";
  }
  const EvalTiming& tm = r.timing;
  std::cout << "prefill " << fixed(tm.prefill_s, 2) << " s (" << tm.prefill_tokens << " tokens, "
            << fixed(tm.prefill_s > 0 ? static_cast<double>(tm.prefill_tokens) / tm.prefill_s : 0.0, 1) << " tokens/s), decode " << fixed(tm.decode_s, 2)
            << " s (" << tm.decode_steps << " steps, " << tm.decode_tokens << " tokens)\n";
}

void run(EvalFlags& f) {
  const auto t0 = Clock::now();
  const SelectionPolicy policy = f.sparse.check(f.backend);
  TaskOptions& o = f.tasks;
  o.kind = parse_task_kind(f.task, "TASK");
  if (f.batch <= 0) throw ConfigError("--batch", "", "must be positive");
  if (!f.prefill_cache.empty() && f.backend != "cpu")
    throw ConfigError("--prefill-cache", "", "acts on --backend cpu (the CUDA prefill is fast enough not to need it)");
  std::ofstream dump_file;  // opened now, so that a path it cannot write fails before the work
  if (!f.dump_tasks.empty()) {
    dump_file.open(f.dump_tasks);
    if (!dump_file) throw ConfigError(f.dump_tasks, "", "cannot write (--dump-tasks)");
  }
  const ModelConfig config = load_model_config(f.model);
  check_model_context(config, o.context, "--context");
  const HeldoutCorpus corpus = HeldoutCorpus::load(f.heldout);
  const Tokenizer tokenizer = Tokenizer::load(f.model);

  const auto t_build = Clock::now();
  std::vector<TaskInstance> instances = build_tasks(o, corpus, tokenizer);
  const double build_s = seconds_since(t_build);
  const auto dump = [&] {
    if (!dump_file.is_open()) return;
    dump_file << tasks_json(o, instances, f.model, f.heldout, config.eos_token_ids).dump() << "\n";
    dump_file.close();
    if (!dump_file) throw ConfigError(f.dump_tasks, "", "writing failed (--dump-tasks)");
  };
  if (o.kind != TaskKind::Fidelity) dump();

  const auto t_load = Clock::now();
  BackendSpec dense_spec{.model = f.model, .backend = f.backend, .requests = std::min(f.batch, o.trials), .context = o.context,
                         .measure_attention_mass = true,  // sparse CUDA policies only (the CPU reference always measures it)
                         .prefill_cache = f.prefill_cache};
  PolicyRun run = make_policy_run(dense_spec, f.sparse, config);
  Backend& evaluated = run.run();
  // Fidelity compares with the dense model: the CPU policy wraps it; on CUDA a second, dense backend.
  std::unique_ptr<Backend> dense_cuda;
  if (o.kind == TaskKind::Fidelity && policy != SelectionPolicy::Full && f.backend == "cuda") dense_cuda = make_backend(dense_spec, config);
  Backend& dense = dense_cuda ? *dense_cuda : *run.backend;
  const double load_s = seconds_since(t_load);

  EvalOptions eval;
  eval.max_new = o.max_new;
  eval.eos_token_ids = config.eos_token_ids;
  EvalTiming reference;
  if (o.kind == TaskKind::Fidelity) {
    eval.progress = progress_line(f.progress, "dense reference");
    reference = make_fidelity_references(dense, instances, eval);  // the dense model, whatever the policy
    dump();
  }
  eval.progress = progress_line(f.progress, "evaluated");
  const EvalResult r = evaluate(evaluated, o.kind, instances, &tokenizer, eval);
  const std::optional<double> overlap = evaluated.overlap_rate();
  const bool sparse = policy != SelectionPolicy::Full;
  const AttentionMassMeter* mass = evaluated.attention_mass();
  const std::optional<double> mass_mean = mass ? mass->mean() : std::nullopt;
  const auto* cpu = dynamic_cast<const CpuBackend*>(run.backend.get());
  const PrefillCache* cache = cpu ? cpu->prefill_cache() : nullptr;
  // Elastic loads of offloaded layers per batched decode step (CUDA sparse policies; null elsewhere:
  // the CPU reference has no host link to cross).
  std::optional<double> h2d_per_step;
  std::optional<int> offloaded_layers;
#if defined(SPECONTEXT_HAVE_CUDA)
  if (auto* cuda = dynamic_cast<CudaBackend*>(run.backend.get()); cuda && sparse) {
    h2d_per_step = cuda->take_h2d_bytes() / std::max<double>(1.0, static_cast<double>(r.timing.decode_steps));
    offloaded_layers = cuda->offloaded_layers();
  }
#endif

  if (!f.json) {
    print_table(f, instances, r);
    if (sparse)
      std::cout << "budget " << f.sparse.budget << ", overlap of adjacent steps' selections "
                << (overlap ? fixed(*overlap, 4) : std::string("n/a (fewer than two decode steps)")) << "\n";
    if (mass_mean) std::cout << "attention mass captured " << fixed(*mass_mean, 4) << "\n";
    if (cache) std::cout << "prefill cache " << cache->dir().string() << ": " << cache->hits() << " prompts restored, " << cache->misses() << " prefilled\n";
    return;
  }
  nlohmann::json j = {{"task", to_string(o.kind)}, {"policy", f.sparse.policy},
                      {"budget", sparse ? nlohmann::json(f.sparse.budget) : nlohmann::json(nullptr)}, {"dlm_rope", run.dlm_rope},
                      {"head_input", needs_retrieval_head(policy) ? nlohmann::json(f.sparse.head.input) : nlohmann::json(nullptr)},
                      {"head_pooling", needs_retrieval_head(policy) ? nlohmann::json(to_string(f.sparse.head.pooling())) : nlohmann::json(nullptr)},
                      {"overlap_rate", overlap ? nlohmann::json(*overlap) : nlohmann::json(nullptr)},
                      {"h2d_bytes_per_step", h2d_per_step ? nlohmann::json(*h2d_per_step) : nlohmann::json(nullptr)},
                      {"offloaded_layers", offloaded_layers ? nlohmann::json(*offloaded_layers) : nlohmann::json(nullptr)},
                      {"attention_mass", mass_mean ? nlohmann::json(*mass_mean) : nlohmann::json(nullptr)},
                      {"attention_mass_per_layer", mass_mean ? nlohmann::json(mass->per_layer()) : nlohmann::json(nullptr)}, {"context", o.context},
                      {"model", f.model}, {"backend", f.backend}, {"seed", o.seed}, {"max_new", o.max_new},
                      {"heldout", f.heldout}, {"metric", metric_name(o.kind)}};
  if (is_answer_task(o.kind)) {
    j["accuracy"] = r.summary.mean;
    int correct = 0;
    for (const TrialResult& t : r.trials) correct += t.correct;
    j["correct"] = correct;
  } else if (o.kind == TaskKind::Perplexity) {
    j["perplexity"] = summary_json(r.summary);
    j["pooled_perplexity"] = r.pooled_perplexity;
    j["mean_nll"] = r.mean_nll;
  } else {
    j["agreement"] = summary_json(r.summary);
  }
  nlohmann::json trials = nlohmann::json::array();
  for (std::size_t i = 0; i < instances.size(); ++i) trials.push_back(trial_json(o.kind, instances[i], r.trials[i]));
  j["trials"] = trials;
  j["timing"] = {{"load_s", load_s}, {"build_s", build_s}, {"reference_s", reference.prefill_s + reference.decode_s},
                 {"prefill_s", r.timing.prefill_s}, {"decode_s", r.timing.decode_s}, {"prefill_tokens", r.timing.prefill_tokens},
                 {"decode_steps", r.timing.decode_steps}, {"decode_tokens", r.timing.decode_tokens}, {"total_s", seconds_since(t0)},
                 {"prefill_cache", cache ? nlohmann::json{{"dir", cache->dir().string()}, {"hits", cache->hits()}, {"misses", cache->misses()}}
                                         : nlohmann::json(nullptr)}};
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "long-context tasks from held-out text (passkey, multikey, vartrack, perplexity, fidelity), scored on a backend");
  cmd->add_option("task", f->task, "passkey, multikey, vartrack, perplexity or fidelity")->required();
  cmd->add_option("--model", f->model, "checkpoint folder (config.json + safetensors + tokenizer.json) or a llama.cpp .gguf file")->required();
  f->sparse.add_to(*cmd);
  cmd->add_option("--context", f->tasks.context, "N: tokens of each trial, prompt + generated (or forced)")->required();
  cmd->add_option("--trials", f->tasks.trials, "task instances")->capture_default_str();
  cmd->add_option("--seed", f->tasks.seed, "seed of the instances (keys, depths, documents, offsets)")->capture_default_str();
  cmd->add_option("--backend", f->backend, "cpu (fp32 reference) or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--max-new", f->tasks.max_new, "answer tasks: greedy tokens generated for the answer")->capture_default_str();
  cmd->add_option("--keys", f->tasks.keys, "multikey: needles")->capture_default_str();
  cmd->add_option("--hops", f->tasks.hops, "vartrack: assignments after the first")->capture_default_str();
  cmd->add_option("--prefix", f->tasks.prefix, "perplexity: tokens prefilled before the forced ones (0: half the context)")->capture_default_str();
  cmd->add_option("--generate", f->tasks.generate, "fidelity: G, tokens the dense model generates")->capture_default_str();
  cmd->add_option("--batch", f->batch, "trials decoded together (requests of the backend)")->capture_default_str();
  cmd->add_option("--heldout", f->heldout, "folder of held-out <source>--<slug>.txt documents")->capture_default_str();
  cmd->add_option("--dump-tasks", f->dump_tasks, "write the instances (token ids, answers, depths, forced tokens) as JSON (engine/task_dump.hpp)");
  cmd->add_option("--prefill-cache", f->prefill_cache,
                  "CPU: a folder of prefilled prompts (engine/prefill_cache.hpp), so that a sweep over policies prefills each instance once");
  cmd->add_flag("--progress", f->progress, "report each batch on stderr");
  cmd->add_flag("--json", f->json, "print JSON");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
