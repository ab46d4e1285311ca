#pragma once
// The CPU reference backend: fp32 everywhere, full (dense) attention (and a sparse decode step that
// reads selected positions only, decode_sparse), Hugging Face semantics
// (Llama, Mistral, Qwen2 QKV bias, Qwen3 q/k norms; MHA, GQA, MQA). Every other backend and
// kernel is checked against it, so it favours plain, obviously correct code over speed.
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/attention_probe.hpp"
#include "engine/backend.hpp"
#include "engine/model_config.hpp"
#include "engine/prefill_cache.hpp"
#include "engine/token_selection.hpp"
#include "engine/weights.hpp"

namespace specontext {

// How one request of a sparse decode step (CpuBackend::decode_sparse) reads its cache. Positions are
// the request's 0..t, with t = length(request) the position of the token entering this step; t itself
// is always attended, listed or not. Prefill is always dense (as in the paper).
struct SparseAttention {
  // One set per KV head shared by every layer (SpeContext's selection): indices in 0..t, ascending,
  // kv_heads rows. nullptr (and no oracle): dense attention, the same arithmetic as decode().
  const TokenSelection* selection = nullptr;
  // The oracle instead, when > 0: at every layer and KV head, the top-`oracle_budget` positions by this
  // step's own dense attention (softmax of each query head, mean over the group's query heads; t
  // counted as the best), then attention over those only.
  std::int64_t oracle_budget = 0;
  // Quest instead, when > 0 (engine/quest_selection.hpp): at every layer and KV head, the pages of 16
  // positions with the best bound on q·k, ceil(quest_budget / 16) of them, then attention over their
  // positions (and t).
  std::int64_t quest_budget = 0;
  // Receives the selection of each layer ([layers]) of the oracle (positions) or of Quest (pages), when not null.
  std::vector<TokenSelection>* layer_selections = nullptr;
  // Receives, per layer, the attention mass the attended set captured (engine/attention_mass.hpp), when not null.
  class AttentionMassMeter* mass = nullptr;
  // Shown every layer's dense attention, keys and query, when not null (engine/trace_recorder.hpp).
  // Alone (no selection, oracle or Quest) the step attends to every position: decode()'s arithmetic.
  AttentionProbe* probe = nullptr;
};


class CpuBackend final : public Backend {
 public:
  // Checks the config (standard layers only) and that every weight has the shape the config
  // implies; throws ConfigError (config) or std::invalid_argument (weights, limits) otherwise.
  CpuBackend(const ModelConfig& config, ModelWeights weights, int max_requests, int max_context);

  std::int64_t vocab() const override { return config_.shape.vocab; }
  std::int64_t max_requests() const override { return static_cast<std::int64_t>(caches_.size()); }
  std::int64_t max_context() const override { return max_context_; }
  void reset(int request) override;
  std::vector<float> prefill(int request, const std::vector<int>& tokens) override;
  std::vector<float> decode(const std::vector<int>& requests, const std::vector<int>& tokens) override;
  std::int64_t length(int request) const override;

  // decode() whose attention reads, per request and KV head, only the positions `attention[i]` selects
  // for requests[i] (SparseAttention above); a selection that lists every position 0..t-1 gives
  // exactly decode()'s logits. Throws std::invalid_argument for a selection of the wrong shape or an
  // index outside 0..t.
  std::vector<float> decode_sparse(const std::vector<int>& requests, const std::vector<int>& tokens,
                                   const std::vector<SparseAttention>& attention);
  // Recording (engine/trace_recorder.hpp): one dense decode step of one request that shows `probe`
  // every layer's attention, keys and query (decode_sparse with the probe alone).
  std::vector<float> decode_probed(int request, int token, AttentionProbe& probe);

  // Like prefill, but returns the logits of every new position: [tokens.size() * vocab].
  std::vector<float> prefill_all_logits(int request, const std::vector<int>& tokens);

  // Request r's cache of layer L, row-major [length, kv_heads * head_dim]; keys after RoPE
  // (and after the q/k norm for Qwen3).
  const std::vector<float>& cached_keys(int request, int layer) const;
  const std::vector<float>& cached_values(int request, int layer) const;

  // Features for an EAGLE-3 draft (engine/retrieval_head.hpp): the residual stream entering each
  // listed layer (Hugging Face's hidden_states[l], l in [0, layers)), captured for every position a
  // prefill or decode processes and concatenated in the order given. Empty, the default, captures
  // nothing and leaves the forward pass as it is. Throws std::invalid_argument for a layer outside
  // the model.
  void set_feature_layers(std::vector<int> layers);
  const std::vector<int>& feature_layers() const { return feature_layers_; }
  // Values per feature row: feature_layers().size() * hidden.
  std::int64_t feature_width() const;
  // Request r's features from its last prefill or decode: [positions that call appended,
  // feature_width()] row-major (empty when no layers are set).
  const std::vector<float>& features(int request) const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  // With a cache (engine/prefill_cache.hpp), prefill() of a prompt into an empty request restores
  // the cached state when there is one (the same K, V, features and logits the forward pass would
  // give on this machine) and stores it otherwise. nullptr (the default): no cache.
  void set_prefill_cache(std::shared_ptr<PrefillCache> cache) { prefill_cache_ = std::move(cache); }
  const PrefillCache* prefill_cache() const { return prefill_cache_.get(); }

 private:
  struct LayerCache {
    std::vector<float> k, v;
  };
  struct RequestCache {
    std::int64_t length = 0;
    std::vector<LayerCache> layers;
    std::vector<float> features;  // of the last forward pass that included this request
  };
  // One request's run of new tokens inside a batched forward pass.
  struct Segment {
    int request;
    std::int64_t first_row, rows;
  };

  void check_request(int request, const char* where) const;
  void check_tokens(const std::vector<int>& tokens, const char* where) const;
  void check_room(int request, std::int64_t added, const char* where) const;
  void check_sparse_attention(int request, const SparseAttention& attention) const;
  std::vector<float> decode_step(const std::vector<int>& requests, const std::vector<int>& tokens,
                                 const std::vector<SparseAttention>* sparse, const char* name);
  // Runs the model over the segments' tokens (rows of `tokens` in segment order), appending to
  // each request's cache; returns logits for the rows listed in `output_rows`.
  // `sparse`, when given, holds one entry per segment (decode segments of one row only).
  std::vector<float> forward(const std::vector<Segment>& segments, const std::vector<int>& tokens,
                             const std::vector<std::int64_t>& output_rows, const std::vector<SparseAttention>* sparse = nullptr);

  ModelConfig config_;
  ModelWeights weights_;
  std::int64_t max_context_;
  std::vector<float> inv_freq_;
  float attention_factor_;
  std::vector<RequestCache> caches_;
  std::vector<int> feature_layers_;
  std::shared_ptr<PrefillCache> prefill_cache_;
};

}  // namespace specontext
