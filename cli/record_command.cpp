// specontext record: attention traces (traces/FORMAT.md) of a dense greedy run on either backend,
// with the rankings of the listed policies at every decode step (engine/trace_recorder.hpp), for
// `specontext replay` and `sim --overlap-from`.
//
//   specontext record --model M [--dlm DIR [--head-input eagle|embed]] --policies specontext,quest,...
//       (--task passkey|multikey|vartrack --context N [--trials K --seed S --keys --hops] | --prompt-file F)
//       [--max-new 8] [--b-max 1024] [--backend cpu|cuda] --out FILE [--progress]
// Prints what it wrote (records, bytes, seconds). The task's prompts are the ones `eval` builds for
// the same flags (same held-out text and seed), so a trace and an eval run see the same trials.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/model_loading.hpp"
#include "cli/policy_flags.hpp"
#include "engine/cpu_backend.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#endif
#include "engine/eagle3_draft.hpp"
#include "engine/heldout_corpus.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/selection_policy.hpp"
#include "engine/tokenizer.hpp"
#include "engine/trace_recorder.hpp"
#include "sim/config_error.hpp"
#include "traces/trace_file.hpp"

#ifndef SPECONTEXT_SOURCE_DIR
#define SPECONTEXT_SOURCE_DIR "."
#endif

namespace specontext::cli {
namespace {

struct RecordFlags {
  std::string model, dlm, policies = "specontext,specontext-batch,quest,streaming", task, prompt_file, out, backend = "cpu";
  std::string heldout = (std::filesystem::path(SPECONTEXT_SOURCE_DIR) / "models" / "heldout").string();
  TaskOptions tasks;
  HeadFlags head;
  long long b_max = 1024;
  bool progress = false;
};

std::vector<SelectionPolicy> parse_policies(const std::string& list) {
  std::vector<SelectionPolicy> out;
  std::stringstream in(list);
  std::string name;
  while (std::getline(in, name, ',')) {
    const SelectionPolicy p = parse_selection_policy(name, "--policies");
    if (p == SelectionPolicy::Full || p == SelectionPolicy::Oracle)
      throw ConfigError("--policies", "", std::string("policy ") + to_string(p) + " needs no ranking (the trace's attention is the oracle's)");
    for (SelectionPolicy q : out)
      if (q == p) throw ConfigError("--policies", "", std::string("policy ") + to_string(p) + " is listed twice");
    out.push_back(p);
  }
  if (out.empty()) throw ConfigError("--policies", "", "no policy listed");
  return out;
}

std::string read_file(const std::string& path, const std::string& origin) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", "cannot open (" + origin + ")");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(RecordFlags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  if (f.backend != "cpu" && f.backend != "cuda") throw ConfigError("--backend", "", "expected cpu or cuda, got '" + f.backend + "'");
#if !defined(SPECONTEXT_HAVE_CUDA)
  if (f.backend == "cuda") throw ConfigError("--backend", "", "this build has no CUDA (no nvcc at configure time); use --backend cpu");
#endif
  const std::vector<SelectionPolicy> policies = parse_policies(f.policies);
  bool needs_head = false;
  for (SelectionPolicy p : policies) needs_head = needs_head || needs_retrieval_head(p);
  if (needs_head != !f.dlm.empty())
    throw ConfigError("--dlm", "", needs_head ? "policies specontext* need the retrieval head's draft (--dlm DIR)" : "no listed policy uses the draft");
  if (f.b_max < 1) throw ConfigError("--b-max", "", "must be positive, got " + std::to_string(f.b_max));
  if (f.tasks.max_new < 1) throw ConfigError("--max-new", "", "must be positive");
  if (f.task.empty() == f.prompt_file.empty()) throw ConfigError("--task", "", "give exactly one of --task and --prompt-file");
  const HeadInput input = f.head.input_mode();
  const ScorePooling pooling = f.head.pooling();
  if (pooling.active() && !needs_head) throw ConfigError(f.head.pooling_flag(), "", "no listed policy uses the retrieval head");

  const ModelConfig config = load_model_config(f.model);
  const Tokenizer tokenizer = Tokenizer::load(f.model);
  std::vector<std::vector<int>> prompts;
  nlohmann::json extra = nlohmann::json::object();
  std::string prompt_source;
  if (!f.task.empty()) {
    f.tasks.kind = parse_task_kind(f.task, "--task");
    if (!is_answer_task(f.tasks.kind)) throw ConfigError("--task", "", "record takes an answer task (passkey, multikey, vartrack)");
    check_model_context(config, f.tasks.context, "--context");
    const HeldoutCorpus corpus = HeldoutCorpus::load(f.heldout);
    nlohmann::json answers = nlohmann::json::array();
    for (const TaskInstance& inst : build_tasks(f.tasks, corpus, tokenizer)) {
      prompts.push_back(inst.prompt);
      answers.push_back(inst.answer);
    }
    extra["answers"] = answers;
    // The held-out folder relative to the source tree when it lies there, so that a committed trace names no machine's paths.
    const std::filesystem::path heldout = std::filesystem::path(f.heldout).lexically_proximate(SPECONTEXT_SOURCE_DIR);
    prompt_source = f.task + ": context " + std::to_string(f.tasks.context) + ", " + std::to_string(f.tasks.trials) + " trials, seed " +
                    std::to_string(f.tasks.seed) + ", held-out text " + heldout.string();
  } else {
    std::vector<int> ids;
    if (tokenizer.add_bos() && tokenizer.bos_id() >= 0) ids.push_back(tokenizer.bos_id());
    const std::vector<int> body = tokenizer.encode(read_file(f.prompt_file, "--prompt-file"));
    ids.insert(ids.end(), body.begin(), body.end());
    prompts.push_back(ids);
    prompt_source = f.prompt_file;
  }
  std::int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(p.size()));
  const std::int64_t context = longest + f.tasks.max_new;
  check_model_context(config, context, "the prompt and --max-new");

  // The dense LLM on either backend; the retrieval head runs on the CPU (fed the LLM's residual
  // streams), reading the LLM's embedding from the host weights.
  ModelWeights weights = load_model_weights(f.model, config);
  std::unique_ptr<CpuBackend> cpu;
  std::unique_ptr<RecordableLlm> llm;
  const Matrix* embedding = &weights.embed;
#if defined(SPECONTEXT_HAVE_CUDA)
  std::unique_ptr<CudaBackend> cuda;
  if (f.backend == "cuda") {
    CudaBackendOptions o;
    o.max_requests = 1;
    o.max_context = context;
    o.cuda_graph = false;
    cuda = std::make_unique<CudaBackend>(config, weights, o);
    llm = std::make_unique<Recordable<CudaBackend>>(*cuda);
  }
#endif
  if (!llm) {
    cpu = std::make_unique<CpuBackend>(config, std::move(weights), 1, static_cast<int>(context));
    embedding = &cpu->weights().embed;
    llm = std::make_unique<Recordable<CpuBackend>>(*cpu);
  }
  std::unique_ptr<RetrievalHeadCpu> head;
  std::string draft_config;
  if (needs_head) {
    Eagle3Draft draft = load_eagle3_draft(f.dlm, config);
    extend_draft_context(draft.config, context);
    draft_config = read_file((std::filesystem::path(f.dlm) / "config.json").string(), "--dlm");
    head = std::make_unique<RetrievalHeadCpu>(std::move(draft), embedding, 1, context, input, pooling);
  }

  TraceRecordOptions o;
  o.policies = policies;
  o.b_max = f.b_max;
  o.max_new = f.tasks.max_new;
  traces::TraceHeader h = trace_header(config, o, prompts);
  h.model = f.model;
  h.draft = f.dlm.empty() ? "" : f.dlm + " (" + f.head.describe() + ")";
  h.task = f.task.empty() ? "prompt-file" : f.task;
  h.prompt_source = prompt_source;
  h.backend = f.backend;
  const ModelShape& s = config.shape;
  // The model's shape and RoPE as the engine read them, and the draft's config.json as written.
  std::ostringstream shape;
  shape << s.layers << ' ' << s.hidden << ' ' << s.q_heads << ' ' << s.kv_heads << ' ' << s.head_dim << ' ' << s.ffn << ' ' << s.vocab << ' '
        << config.rope.theta << '\n';
  h.config_hash = traces::fnv1a64_hex(shape.str() + draft_config);
  h.extra = extra;

  traces::TraceWriter writer(f.out, h);
  const auto t_run = std::chrono::steady_clock::now();
  std::function<void(int, int)> progress;
  if (f.progress)
    progress = [t_run](int done, int total) {
      std::cerr << "record: " << done << "/" << total << " prompts ("
                << fixed(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count(), 1) << " s)\n";
    };
  const std::int64_t records = record_traces(*llm, head.get(), prompts, o, writer, progress);
  writer.close();
  std::cout << "wrote " << f.out << ": " << records << " records (" << prompts.size() << " prompts x up to " << f.tasks.max_new << " steps), "
            << fixed(static_cast<double>(writer.bytes()) / 1e6, 2) << " MB, in "
            << fixed(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1) << " s\n";
}

}  // namespace

void add_record_command(CLI::App& app) {
  auto f = std::make_shared<RecordFlags>();
  CLI::App* cmd = app.add_subcommand("record", "record attention traces: the LLM's attention and each policy's ranking at every decode step");
  cmd->add_option("--model", f->model, "checkpoint folder or a llama.cpp .gguf file")->required();
  cmd->add_option("--dlm", f->dlm, "the retrieval head's EAGLE-3 draft (policies specontext*)");
  f->head.add_to(*cmd);
  cmd->add_option("--policies", f->policies, "rankings to record: streaming, quest, specontext, specontext-batch")->capture_default_str();
  cmd->add_option("--task", f->task, "passkey, multikey or vartrack (the prompts eval builds for the same flags)");
  cmd->add_option("--prompt-file", f->prompt_file, "one prompt as text instead of a task");
  cmd->add_option("--context", f->tasks.context, "task: tokens of each trial, prompt + generated")->capture_default_str();
  cmd->add_option("--trials", f->tasks.trials, "task: instances")->capture_default_str();
  cmd->add_option("--seed", f->tasks.seed, "task: seed of the instances")->capture_default_str();
  cmd->add_option("--keys", f->tasks.keys, "multikey: needles")->capture_default_str();
  cmd->add_option("--hops", f->tasks.hops, "vartrack: assignments after the first")->capture_default_str();
  cmd->add_option("--heldout", f->heldout, "folder of held-out documents")->capture_default_str();
  cmd->add_option("--max-new", f->tasks.max_new, "decode steps recorded per prompt (greedy, dense)")->capture_default_str();
  cmd->add_option("--b-max", f->b_max, "positions per ranking, and the attention's guaranteed top")->capture_default_str();
  cmd->add_option("--backend", f->backend, "cpu (the fp32 reference) or cuda (bf16; the retrieval head stays on the CPU)")->capture_default_str();
  cmd->add_option("--out", f->out, "the trace file to write")->required();
  cmd->add_flag("--progress", f->progress, "report each prompt on stderr");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
