#include "cli/policy_flags.hpp"

#include "cli/format.hpp"
#include "cli/scenario_flags.hpp"
#include "engine/cpu_backend.hpp"
#include "sim/config_error.hpp"

namespace specontext::cli {

void HeadFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--head-input", input, "what feeds the retrieval head: eagle (embedding + fc of the LLM's features) or embed (the embedding alone)")
      ->capture_default_str();
  cmd.add_option("--head-pool", pool,
                 "pool the retrieval head's scores over neighbouring positions before top-B: none (the paper), max:R or mean:R (R in 1..64)")
      ->capture_default_str();
  cmd.add_option("--head-recent", recent, "the retrieval head always keeps the most recent W positions (0: none, the paper)")
      ->capture_default_str();
}

HeadInput HeadFlags::input_mode() const { return parse_head_input(input, "--head-input"); }

ScorePooling HeadFlags::pooling() const { return parse_score_pooling(pool, recent, "--head-pool", "--head-recent"); }

std::string HeadFlags::describe() const {
  const ScorePooling p = pooling();
  return input + " input" + (p.active() ? ", pooling " + to_string(p) : "");
}

void PolicyFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--policy", policy, "KV selection policy: full, streaming, oracle, specontext, specontext-batch or quest")
      ->capture_default_str();
  budget_option = cmd.add_option("--budget", budget, "KV positions a sparse policy keeps per KV head (the entering token is always attended)");
  dlm_option = cmd.add_option("--dlm", dlm, "the distilled LM (EAGLE-3 draft folder) of the retrieval head; policies specontext*");
  head.add_to(cmd);
  cmd.add_option("--offload-layers", offload_layers, "CUDA: the last N layers' KV in pinned host memory, loaded elastically")->capture_default_str();
  cmd.add_flag("--sync-prefetch", sync_prefetch, "CUDA: elastic loads on the compute stream (c1) instead of the copy stream (c1+c2)");
  cmd.add_flag("--adaptive", adaptive, "CUDA: c3, the memory model moves layers to host memory as the context grows");
  cmd.add_option("--gpu-mem", gpu_mem, "CUDA: the engine's GPU memory limit (bytes, or with GB/GiB/MB/MiB), e.g. the paper's 4GB edge setup");
}

SelectionPolicy PolicyFlags::check(const std::string& backend) const {
  const SelectionPolicy p = parse_selection_policy(policy, "--policy");
  if (p == SelectionPolicy::Full && budget_option->count() > 0)
    throw ConfigError("--budget", "", "policy full attends to every position; a KV budget needs a sparse --policy");
  if (p != SelectionPolicy::Full && budget_option->count() == 0)
    throw ConfigError("--budget", "", "policy " + policy + " needs a KV budget (--budget B)");
  if (p != SelectionPolicy::Full && budget <= 0) throw ConfigError("--budget", "", "must be positive, got " + std::to_string(budget));
  if (needs_retrieval_head(p) && dlm_option->count() == 0)
    throw ConfigError("--dlm", "", "policy " + policy + " needs the distilled LM of the retrieval head (--dlm DIR)");
  if (!needs_retrieval_head(p) && dlm_option->count() > 0)
    throw ConfigError("--dlm", "", "the distilled LM is used by policies specontext and specontext-batch only, not " + policy);
  head.input_mode();
  if (head.pooling().active() && !needs_retrieval_head(p))
    throw ConfigError(head.pooling_flag(), "",
                      "pools the retrieval head's scores: policies specontext and specontext-batch only, not " + policy);
  if (backend != "cuda" && (offload_layers != 0 || sync_prefetch || adaptive || !gpu_mem.empty()))
    throw ConfigError("--offload-layers", "", "offloading, --sync-prefetch, --adaptive and --gpu-mem act on --backend cuda");
  if (offload_layers != 0 || adaptive) require_offloadable(p, offload_layers != 0 ? "--offload-layers" : "--adaptive");
  return p;
}

PolicyRun make_policy_run(const BackendSpec& dense, const PolicyFlags& f, const ModelConfig& config) {
  PolicyRun run;
  run.policy = f.check(dense.backend);
  const HeadInput input = f.head.input_mode();
  const ScorePooling pooling = f.head.pooling();
  if (needs_retrieval_head(run.policy)) {
    run.draft = load_eagle3_draft(f.dlm, config);
    run.dlm_rope = extend_draft_context(run.draft->config, dense.context) ? "yarn x" + fixed(run.draft->config.layer.rope.factor, 3) : "native";
  }
  if (run.policy == SelectionPolicy::Full || dense.backend == "cpu") {
    run.backend = make_backend(dense, config);
    if (run.policy == SelectionPolicy::Full) return run;
    auto* cpu = dynamic_cast<CpuBackend*>(run.backend.get());
    if (run.draft)
      run.head = std::make_unique<RetrievalHeadCpu>(std::move(*run.draft), &cpu->weights().embed, dense.requests, dense.context, input, pooling);
    run.cpu_policy = std::make_unique<PolicyBackend>(*cpu, run.policy, f.budget, run.head.get());
    return run;
  }
  BackendSpec spec = dense;
  spec.policy = run.policy;
  spec.budget = f.budget;
  spec.draft = run.draft ? &*run.draft : nullptr;
  spec.head_input = input;
  spec.head_pooling = pooling;
  spec.track_selections = true;
  spec.offload_layers = f.offload_layers;
  spec.async_prefetch = !f.sync_prefetch;
  spec.adaptive_placement = f.adaptive;
  if (!f.gpu_mem.empty()) spec.memory_limit_bytes = parse_bytes(f.gpu_mem, "--gpu-mem");
  run.backend = make_backend(spec, config);
  return run;
}

}  // namespace specontext::cli
