// The CPU reference forward pass. Follows transformers' LlamaModel / Qwen2Model / Qwen3Model in
// fp32: RMSNorm as x * rsqrt(mean(x^2) + eps) * w, RoPE with rotate_half, causal softmax
// attention with scale 1/sqrt(head_dim), SwiGLU MLP, final norm, LM head.
#include "engine/cpu_backend.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/attention_mass.hpp"
#include "engine/cpu_ops.hpp"
#include "engine/quest_selection.hpp"
#include "engine/rope.hpp"
#include "sim/config_error.hpp"

namespace specontext {

namespace {

using cpu::apply_rope;
using cpu::ConstRowMap;
using cpu::linear;
using cpu::rms_norm;
using cpu::RowMatrix;

std::string layer_name(std::size_t l, const std::string& tensor) { return "model.layers." + std::to_string(l) + "." + tensor; }

void check_matrix(const Matrix& m, long long rows, long long cols, const std::string& name) {
  if (m.rows != rows || m.cols != cols)
    throw std::invalid_argument("CpuBackend: weight " + name + " is [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) +
                                "], the config implies [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (static_cast<long long>(m.data.size()) != rows * cols)
    throw std::invalid_argument("CpuBackend: weight " + name + " holds " + std::to_string(m.data.size()) + " values, its shape needs " +
                                std::to_string(rows * cols));
}

void check_vector(const std::vector<float>& v, long long size, const std::string& name) {
  if (static_cast<long long>(v.size()) != size)
    throw std::invalid_argument("CpuBackend: weight " + name + " has " + std::to_string(v.size()) + " values, the config implies " +
                                std::to_string(size));
}

void check_absent(const std::vector<float>& v, const std::string& name, const std::string& why) {
  if (!v.empty()) throw std::invalid_argument("CpuBackend: weight " + name + " is present but the config has " + why);
}

void check_config(const ModelConfig& c) {
  const ModelShape& s = c.shape;
  if (s.eagle3_draft) throw ConfigError(c.origin, "draft_vocab_size", "an EAGLE-3 draft is not a target model the engine can run");
  if (s.kv_lora_rank > 0) throw ConfigError(c.origin, "kv_lora_rank", "MLA attention is not supported by the engine");
  require_positive(s.layers, c.origin, "num_hidden_layers");
  require_positive(s.hidden, c.origin, "hidden_size");
  require_positive(s.q_heads, c.origin, "num_attention_heads");
  require_positive(s.kv_heads, c.origin, "num_key_value_heads");
  require_positive(s.head_dim, c.origin, "head_dim");
  require_positive(s.ffn, c.origin, "intermediate_size");
  require_positive(s.vocab, c.origin, "vocab_size");
  if (s.q_heads % s.kv_heads != 0)
    throw ConfigError(c.origin, "num_key_value_heads",
                      std::to_string(s.kv_heads) + " does not divide num_attention_heads " + std::to_string(s.q_heads));
  if (s.head_dim % 2 != 0) throw ConfigError(c.origin, "head_dim", "RoPE needs an even head dimension, got " + std::to_string(s.head_dim));
  if (!(c.rms_norm_eps >= 0.0)) throw ConfigError(c.origin, "rms_norm_eps", "must be non-negative");
}

void check_weights(const ModelConfig& c, const ModelWeights& w) {
  const ModelShape& s = c.shape;
  const long long q_dim = s.q_heads * s.head_dim, kv_dim = s.kv_heads * s.head_dim;
  check_matrix(w.embed, s.vocab, s.hidden, "model.embed_tokens.weight");
  if (static_cast<long long>(w.layers.size()) != s.layers)
    throw std::invalid_argument("CpuBackend: weights hold " + std::to_string(w.layers.size()) + " layers, the config has " +
                                std::to_string(s.layers) + " (num_hidden_layers)");
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    check_vector(L.input_norm, s.hidden, layer_name(l, "input_layernorm.weight"));
    check_vector(L.post_attention_norm, s.hidden, layer_name(l, "post_attention_layernorm.weight"));
    check_matrix(L.q, q_dim, s.hidden, layer_name(l, "self_attn.q_proj.weight"));
    check_matrix(L.k, kv_dim, s.hidden, layer_name(l, "self_attn.k_proj.weight"));
    check_matrix(L.v, kv_dim, s.hidden, layer_name(l, "self_attn.v_proj.weight"));
    check_matrix(L.o, s.hidden, q_dim, layer_name(l, "self_attn.o_proj.weight"));
    if (s.attention_bias) {
      check_vector(L.q_bias, q_dim, layer_name(l, "self_attn.q_proj.bias"));
      check_vector(L.k_bias, kv_dim, layer_name(l, "self_attn.k_proj.bias"));
      check_vector(L.v_bias, kv_dim, layer_name(l, "self_attn.v_proj.bias"));
    } else {
      check_absent(L.q_bias, layer_name(l, "self_attn.q_proj.bias"), "no attention bias");
      check_absent(L.k_bias, layer_name(l, "self_attn.k_proj.bias"), "no attention bias");
      check_absent(L.v_bias, layer_name(l, "self_attn.v_proj.bias"), "no attention bias");
    }
    if (s.qk_norm) {
      check_vector(L.q_norm, s.head_dim, layer_name(l, "self_attn.q_norm.weight"));
      check_vector(L.k_norm, s.head_dim, layer_name(l, "self_attn.k_norm.weight"));
    } else {
      check_absent(L.q_norm, layer_name(l, "self_attn.q_norm.weight"), "no q/k norm");
      check_absent(L.k_norm, layer_name(l, "self_attn.k_norm.weight"), "no q/k norm");
    }
    check_matrix(L.gate, s.ffn, s.hidden, layer_name(l, "mlp.gate_proj.weight"));
    check_matrix(L.up, s.ffn, s.hidden, layer_name(l, "mlp.up_proj.weight"));
    check_matrix(L.down, s.hidden, s.ffn, layer_name(l, "mlp.down_proj.weight"));
  }
  check_vector(w.final_norm, s.hidden, "model.norm.weight");
  if (!w.lm_head.data.empty() || w.lm_head.rows != 0)
    check_matrix(w.lm_head, s.vocab, s.hidden, "lm_head.weight");
  else if (!s.tied_embeddings)
    throw std::invalid_argument("CpuBackend: weight lm_head.weight is missing and the config does not tie it to the embeddings");
}

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, ModelWeights weights, int max_requests, int max_context)
    : config_(config), weights_(std::move(weights)), max_context_(max_context) {
  check_config(config_);
  check_weights(config_, weights_);
  if (max_requests <= 0) throw std::invalid_argument("CpuBackend: max_requests must be positive, got " + std::to_string(max_requests));
  if (max_context <= 0) throw std::invalid_argument("CpuBackend: max_context must be positive, got " + std::to_string(max_context));
  inv_freq_ = rope_inverse_frequencies(config_);
  attention_factor_ = rope_attention_factor(config_);
  caches_.resize(max_requests);
  for (RequestCache& c : caches_) c.layers.resize(config_.shape.layers);
}

void CpuBackend::check_request(int request, const char* where) const {
  if (request < 0 || request >= static_cast<int>(caches_.size()))
    throw std::invalid_argument(std::string("CpuBackend::") + where + ": request " + std::to_string(request) + " is unknown (requests are 0.." +
                                std::to_string(caches_.size() - 1) + ")");
}

void CpuBackend::check_tokens(const std::vector<int>& tokens, const char* where) const {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= config_.shape.vocab)
      throw std::invalid_argument(std::string("CpuBackend::") + where + ": token id " + std::to_string(tokens[i]) + " (at " + std::to_string(i) +
                                  ") is outside the vocabulary [0, " + std::to_string(config_.shape.vocab) + ")");
}

void CpuBackend::check_room(int request, std::int64_t added, const char* where) const {
  const std::int64_t after = caches_[request].length + added;
  if (after > max_context_)
    throw std::invalid_argument(std::string("CpuBackend::") + where + ": request " + std::to_string(request) + " would hold " +
                                std::to_string(after) + " tokens, past max_context " + std::to_string(max_context_));
  if (config_.shape.max_positions > 0 && after > config_.shape.max_positions)
    throw std::invalid_argument(std::string("CpuBackend::") + where + ": request " + std::to_string(request) + " would hold " +
                                std::to_string(after) + " tokens, past the model's max_position_embeddings " +
                                std::to_string(config_.shape.max_positions) + " (" + config_.origin + ")");
}

void CpuBackend::reset(int request) {
  check_request(request, "reset");
  RequestCache& c = caches_[request];
  c.length = 0;
  c.features.clear();
  for (LayerCache& l : c.layers) {
    l.k.clear();
    l.v.clear();
  }
}

std::int64_t CpuBackend::length(int request) const {
  check_request(request, "length");
  return caches_[request].length;
}

const std::vector<float>& CpuBackend::cached_keys(int request, int layer) const {
  check_request(request, "cached_keys");
  if (layer < 0 || layer >= config_.shape.layers) throw std::invalid_argument("CpuBackend::cached_keys: no layer " + std::to_string(layer));
  return caches_[request].layers[layer].k;
}

const std::vector<float>& CpuBackend::cached_values(int request, int layer) const {
  check_request(request, "cached_values");
  if (layer < 0 || layer >= config_.shape.layers) throw std::invalid_argument("CpuBackend::cached_values: no layer " + std::to_string(layer));
  return caches_[request].layers[layer].v;
}

void CpuBackend::set_feature_layers(std::vector<int> layers) {
  for (int l : layers)
    if (l < 0 || l >= config_.shape.layers)
      throw std::invalid_argument("CpuBackend::set_feature_layers: layer " + std::to_string(l) + " is outside the model's layers 0.." +
                                  std::to_string(config_.shape.layers - 1));
  feature_layers_ = std::move(layers);
  for (RequestCache& c : caches_) c.features.clear();
}

std::int64_t CpuBackend::feature_width() const { return static_cast<std::int64_t>(feature_layers_.size()) * config_.shape.hidden; }

const std::vector<float>& CpuBackend::features(int request) const {
  check_request(request, "features");
  return caches_[request].features;
}

std::vector<float> CpuBackend::prefill(int request, const std::vector<int>& tokens) {
  check_request(request, "prefill");
  if (tokens.empty()) throw std::invalid_argument("CpuBackend::prefill: no tokens for request " + std::to_string(request));
  check_tokens(tokens, "prefill");
  check_room(request, static_cast<std::int64_t>(tokens.size()), "prefill");
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  RequestCache& c = caches_[request];
  if (!prefill_cache_ || c.length > 0) return forward({Segment{request, 0, n}}, tokens, {n - 1});
  if (std::optional<PrefilledRequest> e = prefill_cache_->load(tokens, feature_layers_)) {
    const std::size_t kv_values = static_cast<std::size_t>(n * config_.shape.kv_heads * config_.shape.head_dim);
    bool fits = e->k.size() == c.layers.size() && e->logits.size() == static_cast<std::size_t>(config_.shape.vocab);
    for (std::size_t l = 0; fits && l < e->k.size(); ++l) fits = e->k[l].size() == kv_values && e->v[l].size() == kv_values;
    fits = fits && e->features.size() == static_cast<std::size_t>(n * feature_width());
    if (!fits)
      throw std::runtime_error(prefill_cache_->dir().string() + ": a prefill cache entry of " + std::to_string(n) +
                               " tokens does not fit this model (" + config_.origin + "); delete the folder");
    c.length = n;
    for (std::size_t l = 0; l < c.layers.size(); ++l) {
      c.layers[l].k = std::move(e->k[l]);
      c.layers[l].v = std::move(e->v[l]);
    }
    c.features = std::move(e->features);
    return std::move(e->logits);
  }
  std::vector<float> logits = forward({Segment{request, 0, n}}, tokens, {n - 1});
  PrefilledRequest e;
  for (const LayerCache& l : c.layers) {
    e.k.push_back(l.k);
    e.v.push_back(l.v);
  }
  e.feature_layers = feature_layers_;
  e.features = c.features;
  e.logits = logits;
  try {
    prefill_cache_->store(tokens, e);
  } catch (const std::runtime_error& err) {  // the prefill itself is done and right: say so and go on
    std::cerr << "specontext: warning: prefill cache: " << err.what() << "\n";
  }
  return logits;
}

std::vector<float> CpuBackend::prefill_all_logits(int request, const std::vector<int>& tokens) {
  check_request(request, "prefill_all_logits");
  if (tokens.empty()) throw std::invalid_argument("CpuBackend::prefill_all_logits: no tokens for request " + std::to_string(request));
  check_tokens(tokens, "prefill_all_logits");
  check_room(request, static_cast<std::int64_t>(tokens.size()), "prefill_all_logits");
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  std::vector<std::int64_t> rows(n);
  for (std::int64_t i = 0; i < n; ++i) rows[i] = i;
  return forward({Segment{request, 0, n}}, tokens, rows);
}

std::vector<float> CpuBackend::decode(const std::vector<int>& requests, const std::vector<int>& tokens) {
  return decode_step(requests, tokens, nullptr, "decode");
}

std::vector<float> CpuBackend::decode_probed(int request, int token, AttentionProbe& probe) {
  std::vector<SparseAttention> att(1);
  att[0].probe = &probe;
  return decode_sparse({request}, {token}, att);
}

std::vector<float> CpuBackend::decode_sparse(const std::vector<int>& requests, const std::vector<int>& tokens,
                                             const std::vector<SparseAttention>& attention) {
  if (attention.size() != requests.size())
    throw std::invalid_argument("CpuBackend::decode_sparse: " + std::to_string(requests.size()) + " requests but " +
                                std::to_string(attention.size()) + " attention entries");
  return decode_step(requests, tokens, &attention, "decode_sparse");
}

// One decode step for the listed requests, dense or (with `sparse`) over each request's selection;
// every input is checked before anything is appended to a cache.
std::vector<float> CpuBackend::decode_step(const std::vector<int>& requests, const std::vector<int>& tokens,
                                           const std::vector<SparseAttention>* sparse, const char* name) {
  const std::string what = std::string("CpuBackend::") + name;
  if (requests.size() != tokens.size())
    throw std::invalid_argument(what + ": " + std::to_string(requests.size()) + " requests but " + std::to_string(tokens.size()) + " tokens");
  std::set<int> seen;
  for (int r : requests) {
    check_request(r, name);
    if (!seen.insert(r).second) throw std::invalid_argument(what + ": request " + std::to_string(r) + " appears twice in one step");
    check_room(r, 1, name);
  }
  check_tokens(tokens, name);
  if (sparse) {
    for (std::size_t i = 0; i < requests.size(); ++i) check_sparse_attention(requests[i], (*sparse)[i]);
  }
  if (requests.empty()) return {};
  std::vector<Segment> segments;
  std::vector<std::int64_t> rows;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    segments.push_back(Segment{requests[i], static_cast<std::int64_t>(i), 1});
    rows.push_back(static_cast<std::int64_t>(i));
  }
  return forward(segments, tokens, rows, sparse);
}

void CpuBackend::check_sparse_attention(int request, const SparseAttention& a) const {
  if (a.oracle_budget < 0 || a.quest_budget < 0) throw std::invalid_argument("CpuBackend::decode_sparse: a negative budget");
  if (a.oracle_budget > 0 && a.quest_budget > 0) throw std::invalid_argument("CpuBackend::decode_sparse: both an oracle and a Quest budget");
  if (a.selection && a.quest_budget > 0) throw std::invalid_argument("CpuBackend::decode_sparse: both a selection and a Quest budget");
  if (!a.selection) return;
  if (a.oracle_budget > 0) throw std::invalid_argument("CpuBackend::decode_sparse: both a selection and an oracle budget");
  const TokenSelection& sel = *a.selection;
  const std::int64_t t = caches_[request].length;
  if (sel.kv_heads != config_.shape.kv_heads || sel.count < 0 || static_cast<std::int64_t>(sel.indices.size()) != sel.kv_heads * sel.count)
    throw std::invalid_argument("CpuBackend::decode_sparse: request " + std::to_string(request) + "'s selection has " +
                                std::to_string(sel.kv_heads) + " heads x " + std::to_string(sel.count) + " (" +
                                std::to_string(sel.indices.size()) + " indices), the model has " + std::to_string(config_.shape.kv_heads) +
                                " KV heads");
  for (std::int32_t idx : sel.indices)
    if (idx < 0 || idx > t)
      throw std::invalid_argument("CpuBackend::decode_sparse: request " + std::to_string(request) + " selects position " +
                                  std::to_string(idx) + ", outside 0.." + std::to_string(t));
}

std::vector<float> CpuBackend::forward(const std::vector<Segment>& segments, const std::vector<int>& tokens,
                                       const std::vector<std::int64_t>& output_rows, const std::vector<SparseAttention>* sparse) {
  const ModelShape& s = config_.shape;
  const long long hd = s.head_dim, q_dim = s.q_heads * hd, kv_dim = s.kv_heads * hd, group = s.q_heads / s.kv_heads;
  const Eigen::Index n = static_cast<Eigen::Index>(tokens.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // Each row's position: its request's length before this pass plus its offset in the segment.
  std::vector<std::int64_t> position(n);
  for (const Segment& seg : segments)
    for (std::int64_t t = 0; t < seg.rows; ++t) position[seg.first_row + t] = caches_[seg.request].length + t;

  RowMatrix x(n, s.hidden);
  const ConstRowMap embed(weights_.embed.data.data(), weights_.embed.rows, weights_.embed.cols);
  for (Eigen::Index r = 0; r < n; ++r) x.row(r) = embed.row(tokens[r]);

  const std::int64_t feature_width = this->feature_width();
  for (const Segment& seg : segments) caches_[seg.request].features.assign(seg.rows * feature_width, 0.0f);

  for (long long l = 0; l < s.layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    for (std::size_t slot = 0; slot < feature_layers_.size(); ++slot) {
      if (feature_layers_[slot] != l) continue;
      for (const Segment& seg : segments) {
        Eigen::Map<RowMatrix> rows(caches_[seg.request].features.data(), seg.rows, feature_width);
        rows.middleCols(static_cast<Eigen::Index>(slot) * s.hidden, s.hidden) = x.middleRows(seg.first_row, seg.rows);
      }
    }
    const RowMatrix h = rms_norm(x, L.input_norm, config_.rms_norm_eps);
    RowMatrix q = linear(h, L.q, L.q_bias);
    RowMatrix k = linear(h, L.k, L.k_bias);
    const RowMatrix v = linear(h, L.v, L.v_bias);
    if (s.qk_norm) {
      q = rms_norm(q, L.q_norm, config_.rms_norm_eps);
      k = rms_norm(k, L.k_norm, config_.rms_norm_eps);
    }
    for (Eigen::Index r = 0; r < n; ++r) {
      apply_rope(q, r, position[r], hd, inv_freq_, attention_factor_);
      apply_rope(k, r, position[r], hd, inv_freq_, attention_factor_);
    }

    RowMatrix attn(n, q_dim);
    for (std::size_t si = 0; si < segments.size(); ++si) {
      const Segment& seg = segments[si];
      LayerCache& cache = caches_[seg.request].layers[l];
      const std::int64_t before = caches_[seg.request].length;
      const std::int64_t total = before + seg.rows;
      cache.k.resize(total * kv_dim);
      cache.v.resize(total * kv_dim);
      for (std::int64_t t = 0; t < seg.rows; ++t) {
        Eigen::Map<Eigen::RowVectorXf>(cache.k.data() + (before + t) * kv_dim, kv_dim) = k.row(seg.first_row + t);
        Eigen::Map<Eigen::RowVectorXf>(cache.v.data() + (before + t) * kv_dim, kv_dim) = v.row(seg.first_row + t);
      }
      const ConstRowMap keys(cache.k.data(), total, kv_dim), values(cache.v.data(), total, kv_dim);
      const SparseAttention* sp = sparse ? &(*sparse)[si] : nullptr;
      if (sp && (sp->selection || sp->oracle_budget > 0 || sp->quest_budget > 0 || sp->probe)) {
        // A sparse decode step (one row): the dense scores with the unselected positions masked to
        // -inf before the softmax, so that a selection of every position is decode()'s arithmetic.
        const Eigen::Index row = seg.first_row;
        const Eigen::Index visible = total;
        std::vector<Eigen::VectorXf> scores(static_cast<std::size_t>(s.q_heads));
        for (long long head = 0; head < s.q_heads; ++head) {
          const Eigen::RowVectorXf query = q.row(row).segment(head * hd, hd);
          scores[head] = (keys.block(0, (head / group) * hd, visible, hd) * query.transpose()) * scale;
        }
        // Each head's dense softmax over every position (once, for whoever needs it): the attention
        // mass sums it over the head's attended set; its mean over each group is the oracle's ranking
        // and what a probe is shown.
        std::vector<Eigen::VectorXf> dense;
        std::vector<float> group_mean;
        if (sp->oracle_budget > 0 || sp->mass || sp->probe) {
          dense.resize(static_cast<std::size_t>(s.q_heads));
          if (sp->oracle_budget > 0 || sp->probe) group_mean.assign(static_cast<std::size_t>(s.kv_heads * visible), 0.0f);
          for (long long head = 0; head < s.q_heads; ++head) {
            dense[head] = scores[head];
            cpu::softmax_in_place(dense[head]);
            if (!group_mean.empty())
              Eigen::Map<Eigen::VectorXf>(group_mean.data() + (head / group) * visible, visible) += dense[head] / static_cast<float>(group);
          }
        }
        std::vector<std::uint8_t> keep(static_cast<std::size_t>(s.kv_heads * visible), 0);
        if (sp->selection) {
          for (long long g = 0; g < s.kv_heads; ++g)
            for (std::int32_t idx : sp->selection->head(static_cast<int>(g))) keep[g * visible + idx] = 1;
        } else if (sp->quest_budget > 0) {
          const Eigen::RowVectorXf query = q.row(row);
          QuestSelection chosen = quest_selection(cache.k.data(), visible, static_cast<int>(s.kv_heads), static_cast<int>(hd), query.data(),
                                                  static_cast<int>(s.q_heads), sp->quest_budget);
          for (long long g = 0; g < s.kv_heads; ++g)
            for (std::int32_t idx : chosen.positions[static_cast<std::size_t>(g)]) keep[g * visible + idx] = 1;
          if (sp->layer_selections) {
            sp->layer_selections->resize(static_cast<std::size_t>(s.layers));
            (*sp->layer_selections)[l] = std::move(chosen.pages);
          }
        } else if (sp->oracle_budget <= 0) {  // a probe alone: every position
          std::fill(keep.begin(), keep.end(), 1);
        } else {
          std::vector<float> mean = group_mean;
          for (long long g = 0; g < s.kv_heads; ++g) mean[g * visible + visible - 1] = std::numeric_limits<float>::infinity();
          TokenSelection chosen = select_top_b(mean, static_cast<int>(s.kv_heads), visible, sp->oracle_budget, SelectionLevel::Head);
          for (long long g = 0; g < s.kv_heads; ++g)
            for (std::int32_t idx : chosen.head(static_cast<int>(g))) keep[g * visible + idx] = 1;
          if (sp->layer_selections) {
            sp->layer_selections->resize(static_cast<std::size_t>(s.layers));
            (*sp->layer_selections)[l] = std::move(chosen);
          }
        }
        for (long long g = 0; g < s.kv_heads; ++g) keep[g * visible + visible - 1] = 1;  // the token itself
        if (sp->mass) {
          double captured = 0;
          for (long long head = 0; head < s.q_heads; ++head) {
            const std::uint8_t* kept = keep.data() + (head / group) * visible;
            for (Eigen::Index i = 0; i < visible; ++i)
              if (kept[i]) captured += dense[head][i];
          }
          sp->mass->add(static_cast<int>(l), captured, s.q_heads);
        }
        if (sp->probe) {
          const Eigen::RowVectorXf query = q.row(row);
          sp->probe->layer(static_cast<int>(l), visible, group_mean.data(), cache.k.data(), query.data());
        }
        for (long long head = 0; head < s.q_heads; ++head) {
          const long long kv_head = head / group;
          Eigen::VectorXf& sc = scores[head];
          for (Eigen::Index i = 0; i < visible; ++i)
            if (!keep[kv_head * visible + i]) sc[i] = -std::numeric_limits<float>::infinity();
          cpu::softmax_in_place(sc);
          attn.row(row).segment(head * hd, hd) = sc.transpose() * values.block(0, kv_head * hd, visible, hd);
        }
        continue;
      }
      for (std::int64_t t = 0; t < seg.rows; ++t) {
        const Eigen::Index row = seg.first_row + t;
        const Eigen::Index visible = before + t + 1;  // causal: itself and everything before
        for (long long head = 0; head < s.q_heads; ++head) {
          const long long kv_head = head / group;
          const Eigen::RowVectorXf query = q.row(row).segment(head * hd, hd);
          Eigen::VectorXf scores = (keys.block(0, kv_head * hd, visible, hd) * query.transpose()) * scale;
          cpu::softmax_in_place(scores);
          attn.row(row).segment(head * hd, hd) = scores.transpose() * values.block(0, kv_head * hd, visible, hd);
        }
      }
    }
    x += linear(attn, L.o);

    const RowMatrix h2 = rms_norm(x, L.post_attention_norm, config_.rms_norm_eps);
    const RowMatrix gate = linear(h2, L.gate);
    const RowMatrix up = linear(h2, L.up);
    const RowMatrix act = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    x += linear(act, L.down);
  }
  for (const Segment& seg : segments) caches_[seg.request].length += seg.rows;

  const RowMatrix final_x = rms_norm(x, weights_.final_norm, config_.rms_norm_eps);
  const Matrix& out = weights_.output();
  const ConstRowMap head(out.data.data(), out.rows, out.cols);
  std::vector<float> logits(output_rows.size() * s.vocab);
  for (std::size_t i = 0; i < output_rows.size(); ++i)
    Eigen::Map<Eigen::RowVectorXf>(logits.data() + i * s.vocab, s.vocab) = final_x.row(output_rows[i]) * head.transpose();
  return logits;
}

}  // namespace specontext
