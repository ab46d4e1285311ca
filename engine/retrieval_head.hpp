#pragma once
// SpeContext's retrieval head on the CPU, in fp32 (PAPER.md §1.3–1.7; DESIGN.md, "One decode step"):
// the EAGLE-3 draft pruned to what computes its attention weights. Per request it keeps the draft's
// roped K cache (no V). At each decode step, before the LLM's forward, it computes the draft's query
// for the token entering the LLM and softmax(q Kᵀ/√d) over every cached key, per query head;
// select_positions turns that into the LLM positions each KV head attends to in that step.
//
// Input. The paper does not say what fills the draft's feature half when the head runs before the
// LLM (PAPER.md §1.3); we keep EAGLE-3's own pairing: draft position j reads embed(x_{j+1}) ⊕ fc(f_j),
// with f_j the LLM's features of position j (the residual streams entering the draft's aux layers,
// CpuBackend::set_feature_layers). So a prompt x_0..x_{n-1} gives keys 0..n-2, and the step that
// feeds x_t to the LLM appends key t-1 from x_t and f_{t-1} (the previous step's features) and
// queries from that same position.
//
// Alignment (decided, and measured in models/smollm2-eagle3/README.md): draft key j is computed from
// token j+1's embedding, so it stands for LLM position j+1 (alignment "next"). Reading key j as LLM
// position j instead captured about half as much of the LLM's attention. LLM position 0 has no key
// of its own and is always kept (score +inf): it is the attention sink every layer attends to.
//
// RoPE uses the draft's config at any position; past its max_position_embeddings it extrapolates
// (the paper extends its drafts with YaRN, which a rope_scaling entry in the draft's config selects).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/eagle3_draft.hpp"
#include "engine/token_selection.hpp"
#include "engine/weights.hpp"
#include "kernels/reference/score_pool.hpp"

namespace specontext {

// What fills the draft's attention input (PAPER.md §1.3 leaves it open; both are measured):
//   eagle  RMSNorm(embed(x)) ⊕ RMSNorm(fc(features)), EAGLE-3's own pairing (the default);
//   embed  RMSNorm(embed(x)) ⊕ 0: the embedding alone, i.e. only the embedding half of q_proj and
//          k_proj's columns (no fc, no features; the paper's smaller parameter count fits this reading).
enum class HeadInput { Eagle, Embed };
const char* to_string(HeadInput input);
// "eagle" or "embed"; a ConfigError naming `origin` otherwise.
HeadInput parse_head_input(const std::string& name, const std::string& origin);

// How the head's scores are pooled before top-B (kernels/reference/score_pool.hpp; not in the paper,
// so none by default): `spec` is "none", "max:R" or "mean:R" with R in 1..64, `recent` the most recent
// positions always kept (>= 0). ConfigErrors name `spec_origin` / `recent_origin`.
ScorePooling parse_score_pooling(const std::string& spec, std::int64_t recent, const std::string& spec_origin,
                                 const std::string& recent_origin);
// "none", "max:3", "mean:3", each with ", recent 32" when it has a window: the flag's spelling.
std::string to_string(const ScorePooling& pooling);

// One decode query's attention over the draft's keys.
struct HeadAttention {
  int q_heads = 0, kv_heads = 0;
  ScorePooling pooling;      // the head's, applied by selection_scores
  std::int64_t keys = 0;     // draft keys 0..keys-1, standing for LLM positions 1..keys
  std::vector<float> probs;  // [q_heads, keys]: softmax(q Kᵀ/√d) of each query head
  std::int64_t positions() const { return keys + 1; }  // LLM positions 0..keys
  // Per KV head, scores over LLM positions 0..keys, [kv_heads, keys + 1]: the max over the query
  // heads of its group (GQA; MQA: all heads; MHA: the head itself), the paper's reduction (§1.6);
  // position 0 is +inf.
  std::vector<float> kv_head_scores() const;
  // What top-B ranks, [kv_heads, keys + 1]: head-level, each row of kv_head_scores pooled;
  // batch-level, every row the pooled element-wise max of those rows (the max over all query
  // heads), so that mean pooling acts on the row the batch-level GPU selection reduces to.
  std::vector<float> selection_scores(SelectionLevel level) const;
};

// The LLM positions each KV head keeps this step: top-`budget` of selection_scores, head-level (a set
// per KV head) or batch-level (one set for every head), ascending; ties go to the lower position;
// budget >= positions keeps them all.
TokenSelection select_positions(const HeadAttention& attention, std::int64_t budget, SelectionLevel level);

class RetrievalHeadCpu {
 public:
  // `target_embedding` is the LLM's token embedding [vocab, hidden] (CpuBackend::weights().embed),
  // used when the draft ships none; it is not copied (it is the LLM's largest tensor), so it must
  // outlive the head. max_context counts LLM positions. Throws std::invalid_argument when a weight's
  // shape contradicts the draft's config or no embedding is available.
  // `pooling` shapes the scores decode() hands to selection (HeadAttention::pooling).
  RetrievalHeadCpu(Eagle3Draft draft, const Matrix* target_embedding, int max_requests, std::int64_t max_context,
                   HeadInput input = HeadInput::Eagle, ScorePooling pooling = {});
  HeadInput input() const { return input_; }
  const ScorePooling& pooling() const { return pooling_; }

  void reset(int request);
  // The prompt x_0..x_{n-1} with the LLM's features of the same positions, [n, feature_width()] row
  // major (what CpuBackend::features holds after that prefill): builds keys 0..n-2. The last feature
  // row is not used here; it pairs with the first decode step's token. The request must be empty.
  void prefill(int request, std::span<const int> tokens, std::span<const float> features);
  // One step, before the LLM's forward: `token` enters the LLM at position t = length(request), and
  // `previous_features` is the LLM's feature row of position t-1 (the last row of its previous prefill
  // or decode). Appends key t-1 and returns its query's attention over keys 0..t-1.
  HeadAttention decode(int request, int token, std::span<const float> previous_features);

  // LLM positions the request covers: its keys + 1 (0 before its prefill).
  std::int64_t length(int request) const;
  // Values per feature row: aux layers x target hidden size.
  std::int64_t feature_width() const { return weights_.fc.cols; }
  // Request r's roped keys of one KV head, [keys, head_dim] row-major.
  std::span<const float> cached_keys(int request, int kv_head) const;
  const Eagle3DraftConfig& config() const { return config_; }

 private:
  struct RequestState {
    std::int64_t length = 0;    // LLM positions
    std::int64_t capacity = 0;  // keys that fit in k without moving it
    std::vector<float> k;       // [kv_heads, capacity, head_dim]
  };

  void check_request(int request, const char* where) const;
  void check_token(int token, const char* where) const;
  // Makes room for `keys` keys, keeping the cached ones.
  void reserve(RequestState& r, std::int64_t keys) const;
  // The draft's own embedding, or else the target's (looked up each time, so a moved head stays valid).
  const Matrix& embedding() const { return weights_.embed.data.empty() ? *target_embed_ : weights_.embed; }

  Eagle3DraftConfig config_;
  Eagle3DraftWeights weights_;
  const Matrix* target_embed_;
  std::int64_t max_context_;
  std::vector<float> inv_freq_;
  float attention_factor_;
  std::vector<RequestState> requests_;
  HeadInput input_ = HeadInput::Eagle;
  ScorePooling pooling_;
};

}  // namespace specontext
