#pragma once
// The model behind `--model` (a checkpoint folder or config.json, or a llama.cpp .gguf file) and
// the backend it runs on (`--backend cpu|cuda`), shared by the commands that run a model.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/model_config.hpp"
#include "engine/selection_policy.hpp"
#include "engine/weights.hpp"

namespace specontext::cli {

struct BackendSpec {
  std::string model;          // --model
  std::string backend = "cpu";  // cpu (the fp32 reference) or cuda
  int requests = 1;
  std::int64_t context = 0;   // tokens per request
  bool random_weights = false;  // seeded random weights at the config's shape instead of the checkpoint's
  std::uint64_t seed = 0;
  bool cuda_graph = true;
  // --backend cuda only: the decode steps' KV selection (the CPU reference runs sparse policies
  // through engine/policy_backend.hpp instead).
  SelectionPolicy policy = SelectionPolicy::Full;
  std::int64_t budget = 0;
  const Eagle3Draft* draft = nullptr;  // specontext*: must outlive the call
  HeadInput head_input = HeadInput::Eagle;
  ScorePooling head_pooling = {};
  bool track_selections = false;
  bool measure_attention_mass = false;  // CUDA sparse policies (eval): AttentionMassMeter per step
  int offload_layers = 0;
  bool async_prefetch = true, adaptive_placement = false;
  double memory_limit_bytes = 0;  // 0: what the device has free
  // --backend cpu only: a folder of prefilled prompts (engine/prefill_cache.hpp), keyed by the
  // model's files (or, with random weights, its config and seed); empty: none.
  std::string prefill_cache;
};

ModelConfig load_model_config(const std::string& model);
ModelWeights load_model_weights(const std::string& model, const ModelConfig& config);

// A ConfigError naming the config's max_position_embeddings where `context` tokens exceed it;
// `need` says what asks for them ("--context", "the prompt and --max-new").
void check_model_context(const ModelConfig& config, std::int64_t context, const std::string& need);

// The spec's backend with the model's weights (or random ones); a ConfigError for --backend cuda in
// a build without CUDA.
std::unique_ptr<Backend> make_backend(const BackendSpec& spec, const ModelConfig& config);

}  // namespace specontext::cli
