#pragma once
// The KV selection flags `eval` and `generate` share, and the backend they make: the CPU reference
// under a PolicyBackend (engine/policy_backend.hpp) or the CUDA backend's own sparse decode
// (engine/cuda_sparse_decode.cuh), with the retrieval head of --dlm for specontext*, offloaded layers
// and the adaptive placement on CUDA.
//   --policy full|streaming|oracle|specontext|specontext-batch|quest   --budget B   --dlm DIR
//   --head-input eagle|embed   --head-pool none|max:R|mean:R   --head-recent W
//   (CUDA) --offload-layers N   --sync-prefetch   --adaptive   --gpu-mem BYTES
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/model_loading.hpp"
#include "engine/backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/policy_backend.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/selection_policy.hpp"

namespace specontext::cli {

// How the retrieval head reads and scores (engine/retrieval_head.hpp): the flags eval, generate and
// record share.
struct HeadFlags {
  std::string input = "eagle", pool = "none";
  std::int64_t recent = 0;
  void add_to(CLI::App& cmd);
  HeadInput input_mode() const;  // ConfigError naming --head-input
  ScorePooling pooling() const;  // ConfigErrors naming --head-pool / --head-recent
  std::string describe() const;  // "eagle input", plus ", pooling max:3, recent 32" when pooled
  const char* pooling_flag() const { return pool != "none" ? "--head-pool" : "--head-recent"; }  // for errors about pooling
};

struct PolicyFlags {
  std::string policy = "full", dlm, gpu_mem;
  HeadFlags head;
  std::int64_t budget = 0;
  int offload_layers = 0;
  bool sync_prefetch = false, adaptive = false;
  CLI::Option* budget_option = nullptr;
  CLI::Option* dlm_option = nullptr;
  void add_to(CLI::App& cmd);
  // The policy, checked against the other flags and the backend (ConfigErrors naming the flag).
  SelectionPolicy check(const std::string& backend) const;
};

// What a run under a policy holds: the model's backend, and for sparse policies on the CPU the head
// and the PolicyBackend over it. `run()` is what to decode with.
struct PolicyRun {
  SelectionPolicy policy = SelectionPolicy::Full;
  std::string dlm_rope = "none";  // "native", "yarn xF" (engine/eagle3_draft.hpp), or none without a head
  std::optional<Eagle3Draft> draft;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<RetrievalHeadCpu> head;
  std::unique_ptr<PolicyBackend> cpu_policy;
  Backend& run() { return cpu_policy ? static_cast<Backend&>(*cpu_policy) : *backend; }
};

// `dense` names the model, backend, requests and context; the flags add the policy.
PolicyRun make_policy_run(const BackendSpec& dense, const PolicyFlags& flags, const ModelConfig& config);

}  // namespace specontext::cli
