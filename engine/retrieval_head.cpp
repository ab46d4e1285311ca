// The retrieval head's arithmetic follows models/train/eagle3_draft.py (Eagle3Draft.retrieval_qk,
// causal_softmax_rows) in fp32 with the CPU reference's own norm, projection and RoPE.
#include "engine/retrieval_head.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cpu_ops.hpp"
#include "engine/rope.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

using cpu::ConstRowMap;
using cpu::RowMatrix;

void check_shape(const Matrix& m, std::int64_t rows, std::int64_t cols, const std::string& name) {
  if (m.rows != rows || m.cols != cols || static_cast<std::int64_t>(m.data.size()) != rows * cols)
    throw std::invalid_argument("RetrievalHeadCpu: weight " + name + " is [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) +
                                "] with " + std::to_string(m.data.size()) + " values, the draft's config implies [" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

void check_size(const std::vector<float>& v, std::int64_t size, const std::string& name) {
  if (static_cast<std::int64_t>(v.size()) != size)
    throw std::invalid_argument("RetrievalHeadCpu: weight " + name + " has " + std::to_string(v.size()) +
                                " values, the draft's config implies " + std::to_string(size));
}

// RMSNorm(embed(tokens)) ⊕ RMSNorm(fc(features)), embedding first (EAGLE-3's MidLayer.attention_input),
// or with the right half zero for HeadInput::Embed (features unused): one row per draft position,
// [tokens.size(), 2 * hidden].
RowMatrix attention_input(const Eagle3DraftWeights& w, const Matrix& embedding, double eps, std::span<const int> tokens,
                          const float* features, HeadInput input) {
  const auto rows = static_cast<Eigen::Index>(tokens.size());
  const auto h = static_cast<Eigen::Index>(w.input_norm.size());
  const ConstRowMap embed(embedding.data.data(), embedding.rows, embedding.cols);
  RowMatrix e(rows, h);
  for (Eigen::Index r = 0; r < rows; ++r) e.row(r) = embed.row(tokens[r]);
  RowMatrix x(rows, 2 * h);
  x.leftCols(h) = cpu::rms_norm(e, w.input_norm, eps);
  if (input == HeadInput::Embed) {
    x.rightCols(h).setZero();
    return x;
  }
  const RowMatrix f = ConstRowMap(features, rows, w.fc.cols);
  x.rightCols(h) = cpu::rms_norm(cpu::linear(f, w.fc), w.hidden_norm, eps);
  return x;
}

}  // namespace

const char* to_string(HeadInput input) { return input == HeadInput::Embed ? "embed" : "eagle"; }

HeadInput parse_head_input(const std::string& name, const std::string& origin) {
  if (name == "eagle") return HeadInput::Eagle;
  if (name == "embed") return HeadInput::Embed;
  throw ConfigError(origin, "", "unknown retrieval-head input '" + name + "' (eagle or embed)");
}

ScorePooling parse_score_pooling(const std::string& spec, std::int64_t recent, const std::string& spec_origin,
                                 const std::string& recent_origin) {
  ScorePooling p;
  if (recent < 0) throw ConfigError(recent_origin, "", "must be >= 0, got " + std::to_string(recent));
  p.recent = recent;
  if (spec == "none") return p;
  const std::size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon), radius = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "max") p.kind = ScorePoolKind::Max;
  else if (kind == "mean") p.kind = ScorePoolKind::Mean;
  else throw ConfigError(spec_origin, "", "unknown pooling '" + spec + "' (none, max:R or mean:R)");
  const bool digits = !radius.empty() && radius.size() <= 3 && radius.find_first_not_of("0123456789") == std::string::npos;
  p.radius = digits ? std::stoi(radius) : -1;
  if (p.radius < 1 || p.radius > ScorePooling::kMaxRadius)
    throw ConfigError(spec_origin, "", "'" + spec + "': the radius after '" + kind + ":' must be an integer in 1.." +
                                           std::to_string(ScorePooling::kMaxRadius));
  return p;
}

std::string to_string(const ScorePooling& p) {
  std::string s = p.kind == ScorePoolKind::None ? "none" : std::string(p.kind == ScorePoolKind::Max ? "max:" : "mean:") + std::to_string(p.radius);
  if (p.recent > 0) s += ", recent " + std::to_string(p.recent);
  return s;
}

std::vector<float> HeadAttention::kv_head_scores() const {
  const int group = q_heads / kv_heads;
  const std::int64_t n = positions();
  std::vector<float> scores(static_cast<std::size_t>(kv_heads * n), -std::numeric_limits<float>::infinity());
  for (int g = 0; g < kv_heads; ++g) {
    float* row = scores.data() + g * n;
    row[0] = std::numeric_limits<float>::infinity();
    for (int head = g * group; head < (g + 1) * group; ++head) {
      const float* p = probs.data() + head * keys;
      for (std::int64_t j = 0; j < keys; ++j) row[j + 1] = std::max(row[j + 1], p[j]);  // draft key j -> LLM position j + 1
    }
  }
  return scores;
}

std::vector<float> HeadAttention::selection_scores(SelectionLevel level) const {
  std::vector<float> raw = kv_head_scores();
  const std::int64_t n = positions();
  const bool batch = level == SelectionLevel::Batch;
  if (batch)
    for (int g = 1; g < kv_heads; ++g)
      for (std::int64_t j = 0; j < n; ++j) raw[j] = std::max(raw[j], raw[g * n + j]);
  std::vector<float> out = raw;
  const int rows = batch ? 1 : kv_heads;  // batch-level: row 0 is the one row to pool
  if (pooling.active())
    for (int g = 0; g < rows; ++g) ref::score_pool_row(raw.data() + g * n, out.data() + g * n, n, pooling);
  if (batch)
    for (int g = 1; g < kv_heads; ++g) std::copy_n(out.begin(), n, out.begin() + g * n);
  return out;
}

TokenSelection select_positions(const HeadAttention& attention, std::int64_t budget, SelectionLevel level) {
  return select_top_b(attention.selection_scores(level), attention.kv_heads, attention.positions(), budget, level);
}

RetrievalHeadCpu::RetrievalHeadCpu(Eagle3Draft draft, const Matrix* target_embedding, int max_requests, std::int64_t max_context,
                                   HeadInput input, ScorePooling pooling)
    : config_(std::move(draft.config)), weights_(std::move(draft.weights)), target_embed_(target_embedding), max_context_(max_context),
      input_(input), pooling_(pooling) {
  const ModelShape& s = config_.layer.shape;
  const std::int64_t h = s.hidden;
  if (s.q_heads < 1 || s.kv_heads < 1 || s.q_heads % s.kv_heads != 0)
    throw std::invalid_argument("RetrievalHeadCpu: " + std::to_string(s.q_heads) + " query heads do not group over " +
                                std::to_string(s.kv_heads) + " KV heads");
  check_shape(weights_.fc, h, static_cast<std::int64_t>(config_.aux_layers.size()) * config_.target_hidden, "fc.weight");
  check_size(weights_.hidden_norm, h, "midlayer.hidden_norm.weight");
  check_size(weights_.input_norm, h, "midlayer.input_layernorm.weight");
  check_shape(weights_.q, s.q_heads * s.head_dim, 2 * h, "midlayer.self_attn.q_proj.weight");
  check_shape(weights_.k, s.kv_heads * s.head_dim, 2 * h, "midlayer.self_attn.k_proj.weight");
  if (weights_.embed.data.empty() && target_embedding == nullptr)
    throw std::invalid_argument("RetrievalHeadCpu: the draft ships no embed_tokens.weight and no target embedding was given");
  check_shape(embedding(), s.vocab, h, weights_.embed.data.empty() ? "the target's embedding" : "embed_tokens.weight");
  if (max_requests <= 0) throw std::invalid_argument("RetrievalHeadCpu: max_requests must be positive, got " + std::to_string(max_requests));
  if (max_context <= 0) throw std::invalid_argument("RetrievalHeadCpu: max_context must be positive, got " + std::to_string(max_context));
  if (!pooling.valid())
    throw std::invalid_argument("RetrievalHeadCpu: pooling radius " + std::to_string(pooling.radius) + " or recent window " +
                                std::to_string(pooling.recent) + " out of range");
  inv_freq_ = rope_inverse_frequencies(config_.layer);
  attention_factor_ = rope_attention_factor(config_.layer);
  requests_.resize(static_cast<std::size_t>(max_requests));
}

void RetrievalHeadCpu::check_request(int request, const char* where) const {
  if (request < 0 || request >= static_cast<int>(requests_.size()))
    throw std::invalid_argument(std::string("RetrievalHeadCpu::") + where + ": request " + std::to_string(request) +
                                " is unknown (requests are 0.." + std::to_string(requests_.size() - 1) + ")");
}

void RetrievalHeadCpu::check_token(int token, const char* where) const {
  if (token < 0 || token >= config_.layer.shape.vocab)
    throw std::invalid_argument(std::string("RetrievalHeadCpu::") + where + ": token id " + std::to_string(token) +
                                " is outside the vocabulary [0, " + std::to_string(config_.layer.shape.vocab) + ")");
}

void RetrievalHeadCpu::reserve(RequestState& r, std::int64_t keys) const {
  if (keys <= r.capacity) return;
  // Doubling keeps appends amortised O(1) while each head's keys stay contiguous for the q·K product.
  const std::int64_t capacity = std::min(std::max({keys, 2 * r.capacity, std::int64_t{64}}), std::max(max_context_ - 1, keys));
  const std::int64_t d = config_.layer.shape.head_dim, heads = config_.layer.shape.kv_heads;
  const std::int64_t cached = std::max<std::int64_t>(r.length - 1, 0);
  std::vector<float> k(static_cast<std::size_t>(heads * capacity * d));
  for (std::int64_t g = 0; g < heads; ++g)
    std::copy_n(r.k.begin() + g * r.capacity * d, cached * d, k.begin() + g * capacity * d);
  r.k = std::move(k);
  r.capacity = capacity;
}

void RetrievalHeadCpu::reset(int request) {
  check_request(request, "reset");
  requests_[request] = RequestState{};
}

std::int64_t RetrievalHeadCpu::length(int request) const {
  check_request(request, "length");
  return requests_[request].length;
}

std::span<const float> RetrievalHeadCpu::cached_keys(int request, int kv_head) const {
  check_request(request, "cached_keys");
  const ModelShape& s = config_.layer.shape;
  if (kv_head < 0 || kv_head >= s.kv_heads)
    throw std::invalid_argument("RetrievalHeadCpu::cached_keys: no KV head " + std::to_string(kv_head));
  const RequestState& r = requests_[request];
  const std::int64_t keys = std::max<std::int64_t>(r.length - 1, 0);
  return {r.k.data() + kv_head * r.capacity * s.head_dim, static_cast<std::size_t>(keys * s.head_dim)};
}

void RetrievalHeadCpu::prefill(int request, std::span<const int> tokens, std::span<const float> features) {
  check_request(request, "prefill");
  RequestState& r = requests_[request];
  const auto n = static_cast<std::int64_t>(tokens.size());
  if (r.length != 0)
    throw std::invalid_argument("RetrievalHeadCpu::prefill: request " + std::to_string(request) + " already holds " +
                                std::to_string(r.length) + " positions (reset it first)");
  if (n == 0) throw std::invalid_argument("RetrievalHeadCpu::prefill: no tokens for request " + std::to_string(request));
  if (n > max_context_)
    throw std::invalid_argument("RetrievalHeadCpu::prefill: " + std::to_string(n) + " tokens, past max_context " + std::to_string(max_context_));
  if (static_cast<std::int64_t>(features.size()) != n * feature_width())
    throw std::invalid_argument("RetrievalHeadCpu::prefill: " + std::to_string(features.size()) + " feature values for " + std::to_string(n) +
                                " tokens of " + std::to_string(feature_width()) + " each");
  for (int t : tokens) check_token(t, "prefill");

  const ModelShape& s = config_.layer.shape;
  const std::int64_t keys = n - 1, d = s.head_dim;
  reserve(r, keys);
  if (keys > 0) {
    RowMatrix k = cpu::linear(attention_input(weights_, embedding(), config_.layer.rms_norm_eps, tokens.subspan(1), features.data(), input_), weights_.k);
    for (Eigen::Index j = 0; j < keys; ++j) {
      cpu::apply_rope(k, j, j, d, inv_freq_, attention_factor_);
      for (std::int64_t g = 0; g < s.kv_heads; ++g)
        std::copy_n(k.row(j).data() + g * d, d, r.k.begin() + (g * r.capacity + j) * d);
    }
  }
  r.length = n;
}

HeadAttention RetrievalHeadCpu::decode(int request, int token, std::span<const float> previous_features) {
  check_request(request, "decode");
  check_token(token, "decode");
  RequestState& r = requests_[request];
  if (r.length == 0)
    throw std::invalid_argument("RetrievalHeadCpu::decode: request " + std::to_string(request) +
                                " is empty; prefill it first (a step needs the previous position's features)");
  if (r.length >= max_context_)
    throw std::invalid_argument("RetrievalHeadCpu::decode: request " + std::to_string(request) + " would hold " +
                                std::to_string(r.length + 1) + " positions, past max_context " + std::to_string(max_context_));
  if (static_cast<std::int64_t>(previous_features.size()) != feature_width())
    throw std::invalid_argument("RetrievalHeadCpu::decode: " + std::to_string(previous_features.size()) + " feature values, expected " +
                                std::to_string(feature_width()));

  const ModelShape& s = config_.layer.shape;
  const std::int64_t d = s.head_dim, t = r.length, position = t - 1, group = s.q_heads / s.kv_heads;
  const int tokens[] = {token};
  const RowMatrix x = attention_input(weights_, embedding(), config_.layer.rms_norm_eps, tokens, previous_features.data(), input_);
  RowMatrix q = cpu::linear(x, weights_.q), k = cpu::linear(x, weights_.k);
  cpu::apply_rope(q, 0, position, d, inv_freq_, attention_factor_);
  cpu::apply_rope(k, 0, position, d, inv_freq_, attention_factor_);
  reserve(r, t);
  for (std::int64_t g = 0; g < s.kv_heads; ++g) std::copy_n(k.row(0).data() + g * d, d, r.k.begin() + (g * r.capacity + position) * d);
  r.length = t + 1;

  HeadAttention a;
  a.pooling = pooling_;
  a.q_heads = static_cast<int>(s.q_heads);
  a.kv_heads = static_cast<int>(s.kv_heads);
  a.keys = t;
  a.probs.resize(static_cast<std::size_t>(s.q_heads * t));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (std::int64_t head = 0; head < s.q_heads; ++head) {
    const ConstRowMap keys(r.k.data() + (head / group) * r.capacity * d, t, d);
    Eigen::Map<Eigen::VectorXf> p(a.probs.data() + head * t, t);
    p = (keys * q.row(0).segment(head * d, d).transpose()) * scale;
    cpu::softmax_in_place(p);
  }
  return a;
}

}  // namespace specontext
