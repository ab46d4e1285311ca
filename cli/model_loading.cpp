#include "cli/model_loading.hpp"

#include <algorithm>
#include <filesystem>

#include "engine/cpu_backend.hpp"
#include "engine/gguf_model.hpp"
#include "engine/prefill_cache.hpp"
#include "engine/safetensors.hpp"
#include "sim/config_error.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#endif

namespace specontext::cli {

ModelConfig load_model_config(const std::string& model) {
  return is_gguf_path(model) ? gguf_engine_config(GgufFile(model)) : load_engine_config(model);
}

ModelWeights load_model_weights(const std::string& model, const ModelConfig& config) {
  return is_gguf_path(model) ? gguf_weights(config, GgufFile(model)) : load_weights(config, Checkpoint::open(model));
}

void check_model_context(const ModelConfig& config, std::int64_t context, const std::string& need) {
  if (config.shape.max_positions > 0 && context > config.shape.max_positions)
    throw ConfigError(config.origin, "max_position_embeddings",
                      "a context of " + std::to_string(context) + " tokens (" + need + "), the model supports " + std::to_string(config.shape.max_positions));
}

namespace {

// The files whose bytes make the model: a .gguf file, or a checkpoint folder's config.json and its
// safetensors (single or sharded); with random weights the config the weights were drawn for, with
// the seed mixed in. (Byte by byte: ~1 s per GB, once per run.)
std::uint64_t model_fingerprint(const BackendSpec& s, const ModelConfig& config) {
  namespace fs = std::filesystem;
  if (s.random_weights) return content_fingerprint({config.origin}) ^ (0x9e3779b97f4a7c15ull * (s.seed + 1));
  const fs::path dir(s.model);
  if (!fs::is_directory(dir)) return content_fingerprint({dir});  // a .gguf file
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  files.insert(files.begin(), dir / "config.json");
  return content_fingerprint(files);
}

}  // namespace

std::unique_ptr<Backend> make_backend(const BackendSpec& s, const ModelConfig& config) {
  if (s.backend == "cpu") {
    if (s.policy != SelectionPolicy::Full) throw std::logic_error("make_backend: the CPU reference runs sparse policies through PolicyBackend");
    ModelWeights w = s.random_weights ? random_weights(config, s.seed) : load_model_weights(s.model, config);
    auto cpu = std::make_unique<CpuBackend>(config, std::move(w), s.requests, static_cast<int>(s.context));
    if (!s.prefill_cache.empty()) cpu->set_prefill_cache(std::make_shared<PrefillCache>(s.prefill_cache, model_fingerprint(s, config)));
    return cpu;
  }
#if defined(SPECONTEXT_HAVE_CUDA)
  CudaBackendOptions o;
  o.max_requests = s.requests;
  o.max_context = s.context;
  o.cuda_graph = s.cuda_graph;
  o.policy = s.policy;
  o.budget = s.budget;
  o.draft = s.draft;
  o.head_input = s.head_input;
  o.head_pooling = s.head_pooling;
  o.track_selections = s.track_selections;
  o.measure_attention_mass = s.measure_attention_mass;
  o.offload_layers = s.offload_layers;
  o.async_prefetch = s.async_prefetch;
  o.adaptive_placement = s.adaptive_placement;
  o.memory_limit_bytes = s.memory_limit_bytes;
  if (s.random_weights) return std::make_unique<CudaBackend>(config, s.seed, o);
  return std::make_unique<CudaBackend>(config, load_model_weights(s.model, config), o);
#else
  throw ConfigError("--backend", "", "this build has no CUDA (no nvcc at configure time); use --backend cpu");
#endif
}

}  // namespace specontext::cli
