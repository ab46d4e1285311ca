#include "engine/retrieval_head_cuda.cuh"

#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/rope.hpp"
#include "kernels/add_rmsnorm.cuh"
#include "kernels/attention_scores.cuh"
#include "kernels/embedding.cuh"
#include "kernels/rope_kv_append.cuh"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

void require_shape(const Matrix& m, std::int64_t rows, std::int64_t cols, const char* name) {
  if (m.rows != rows || m.cols != cols)
    throw std::invalid_argument(std::string("RetrievalHeadCuda: weight ") + name + " is [" + std::to_string(m.rows) + ", " +
                                std::to_string(m.cols) + "], the draft's config implies [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "]");
}

}  // namespace

double RetrievalHeadCuda::device_bytes(const Eagle3DraftConfig& c, bool own_embedding, int max_requests, std::int64_t max_context,
                                       std::int64_t max_rows) {
  const ModelShape& s = c.layer.shape;
  const double h = static_cast<double>(s.hidden), qk = static_cast<double>((s.q_heads + s.kv_heads) * s.head_dim);
  const double fw = static_cast<double>(c.aux_layers.size()) * static_cast<double>(c.target_hidden);
  const double weights = 2.0 * (h * fw + 2 * h + qk * 2 * h + (own_embedding ? static_cast<double>(s.vocab) * h : 0.0));
  const double cache = 2.0 * max_requests * static_cast<double>(s.kv_heads * s.head_dim) * static_cast<double>(max_context);
  const double rows = static_cast<double>(max_rows) * (4.0 * h + 2.0 * (h + h + 2 * h + qk));
  const double workspace = static_cast<double>(kernels::attention_scores_workspace_bytes(
      static_cast<int>(max_rows), static_cast<int>(s.q_heads), static_cast<int>(max_context)));
  return weights + cache + rows + workspace;
}

RetrievalHeadCuda::RetrievalHeadCuda(const Eagle3Draft& draft, const bf16_bits* target_embed, int max_requests, std::int64_t max_context,
                                     std::int64_t max_rows, CudaGemm gemm, HeadInput input)
    : config_(draft.config), gemm_(gemm), max_requests_(max_requests), max_context_(max_context), max_rows_(max_rows), input_(input) {
  const ModelShape& s = config_.layer.shape;
  q_heads_ = static_cast<int>(s.q_heads);
  kv_heads_ = static_cast<int>(s.kv_heads);
  head_dim_ = static_cast<int>(s.head_dim);
  hidden_ = s.hidden;
  feature_width_ = static_cast<std::int64_t>(config_.aux_layers.size()) * config_.target_hidden;
  qk_width_ = (s.q_heads + s.kv_heads) * s.head_dim;
  eps_ = static_cast<float>(config_.layer.rms_norm_eps);
  if (head_dim_ != 32 && head_dim_ != 64 && head_dim_ != 128)
    throw ConfigError(config_.layer.origin, "head_dim", "the CUDA retrieval head supports head_dim 32, 64 and 128, not " + std::to_string(head_dim_));
  if (max_requests <= 0 || max_context <= 1 || max_rows <= 0)
    throw std::invalid_argument("RetrievalHeadCuda: max_requests, max_rows must be positive and max_context > 1");
  const Eagle3DraftWeights& w = draft.weights;
  require_shape(w.fc, hidden_, feature_width_, "fc.weight");
  require_shape(w.q, s.q_heads * s.head_dim, 2 * hidden_, "midlayer.self_attn.q_proj.weight");
  require_shape(w.k, s.kv_heads * s.head_dim, 2 * hidden_, "midlayer.self_attn.k_proj.weight");
  if (static_cast<std::int64_t>(w.input_norm.size()) != hidden_ || static_cast<std::int64_t>(w.hidden_norm.size()) != hidden_)
    throw std::invalid_argument("RetrievalHeadCuda: the input norms do not have the draft's hidden size");
  if (!w.embed.data.empty()) {
    require_shape(w.embed, s.vocab, hidden_, "embed_tokens.weight");
    own_embed_ = upload_bf16(w.embed.data);
    embed_ = own_embed_.ptr;
  } else {
    if (target_embed == nullptr) throw std::invalid_argument("RetrievalHeadCuda: the draft ships no embed_tokens.weight and no target embedding was given");
    embed_ = target_embed;
  }
  fc_ = upload_bf16(w.fc.data);
  input_norm_ = upload_bf16(w.input_norm);
  hidden_norm_ = upload_bf16(w.hidden_norm);
  std::vector<float> qk(w.q.data);
  qk.insert(qk.end(), w.k.data.begin(), w.k.data.end());
  wqk_ = upload_bf16(qk);
  const std::vector<float> freqs = rope_inverse_frequencies(config_.layer);
  inv_freq_ = DeviceArray<float>(freqs.size());
  inv_freq_.upload(freqs);
  attention_factor_ = rope_attention_factor(config_.layer);
  k_cache_ = DeviceArray<bf16_bits>(static_cast<std::size_t>(max_requests) * kv_heads_ * static_cast<std::size_t>(max_context) * head_dim_);
  const auto rows = static_cast<std::size_t>(max_rows);
  norm_scratch_ = DeviceArray<float>(rows * hidden_);
  token_rows_ = DeviceArray<bf16_bits>(rows * hidden_);
  fc_rows_ = DeviceArray<bf16_bits>(rows * hidden_);
  input_rows_ = DeviceArray<bf16_bits>(rows * 2 * hidden_);
  qk_rows_ = DeviceArray<bf16_bits>(rows * qk_width_);
  score_workspace_ = DeviceArray<std::uint8_t>(kernels::attention_scores_workspace_bytes(static_cast<int>(max_rows), q_heads_,
                                                                                          static_cast<int>(max_context)));
}

void RetrievalHeadCuda::project(const std::int32_t* ids, const bf16_bits* features, std::int64_t feature_stride,
                                const std::int32_t* key_positions, const std::int32_t* slots, std::int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return;
  if (rows > max_rows_) throw std::invalid_argument("RetrievalHeadCuda::project: " + std::to_string(rows) + " rows, more than " + std::to_string(max_rows_));
  if (feature_stride != feature_width_)
    throw std::invalid_argument("RetrievalHeadCuda::project: feature rows of " + std::to_string(feature_stride) + " values, the draft reads " +
                                std::to_string(feature_width_));
  gemm_.stream = stream;
  const std::size_t scratch_bytes = static_cast<std::size_t>(rows * hidden_) * sizeof(float);
  // RMSNorm(embed(x)) into the left half of the attention input: add_rmsnorm over a zeroed residual.
  kernels::launch_embedding({token_rows_.ptr, embed_, ids, rows, hidden_, config_.layer.shape.vocab}, stream);
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(norm_scratch_.ptr, 0, scratch_bytes, stream));
  kernels::AddRmsNormParams n;
  n.residual = norm_scratch_.ptr;
  n.delta = token_rows_.ptr;
  n.weight = input_norm_.ptr;
  n.out = input_rows_.ptr;
  n.tokens = rows;
  n.hidden = hidden_;
  n.eps = eps_;
  n.out_stride = 2 * hidden_;
  kernels::launch_add_rmsnorm(n, stream);
  if (input_ == HeadInput::Embed) {
    // The embedding alone: the right half is zero, so only q/k's embedding columns count.
    SPECONTEXT_CUDA_CHECK(cudaMemset2DAsync(input_rows_.ptr + hidden_, static_cast<std::size_t>(2 * hidden_) * 2, 0,
                                            static_cast<std::size_t>(hidden_) * 2, static_cast<std::size_t>(rows), stream));
  } else {
    // RMSNorm(fc(f)) into the right half.
    gemm_(features, rows, feature_width_, fc_.ptr, hidden_, fc_rows_.ptr, CUDA_R_16BF);
    SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(norm_scratch_.ptr, 0, scratch_bytes, stream));
    n.delta = fc_rows_.ptr;
    n.weight = hidden_norm_.ptr;
    n.out = input_rows_.ptr + hidden_;
    kernels::launch_add_rmsnorm(n, stream);
  }
  // q and k in one projection, then RoPE at the key position; the key goes to the cache (no V).
  gemm_(input_rows_.ptr, rows, 2 * hidden_, wqk_.ptr, qk_width_, qk_rows_.ptr, CUDA_R_16BF);
  kernels::RopeKvAppendParams r;
  r.qkv = qk_rows_.ptr;
  r.k_cache = k_cache_.ptr;
  r.v_cache = nullptr;
  r.inv_freq = inv_freq_.ptr;
  r.positions = key_positions;
  r.slots = slots;
  r.tokens = rows;
  r.row_stride = qk_width_;
  r.q_heads = q_heads_;
  r.kv_heads = kv_heads_;
  r.head_dim = head_dim_;
  r.cache_head_stride = max_context_ * head_dim_;
  r.cache_request_stride = kv_heads_ * r.cache_head_stride;
  r.attention_factor = attention_factor_;
  kernels::launch_rope_kv_append(r, stream);
}

void RetrievalHeadCuda::scores(const std::int32_t* slots, const std::int32_t* lengths, int rows, int max_positions, bool all_heads, float* out,
                               std::int64_t out_stride, cudaStream_t stream) {
  if (rows > max_rows_) throw std::invalid_argument("RetrievalHeadCuda::scores: more rows than the head holds");
  kernels::AttentionScoresParams p;
  p.q = qk_rows_.ptr;
  p.q_row_stride = qk_width_;
  p.k_cache = k_cache_.ptr;
  p.kv_head_stride = max_context_ * head_dim_;
  p.kv_request_stride = kv_heads_ * p.kv_head_stride;
  p.slots = slots;
  p.lengths = lengths;
  p.length_offset = -1;  // LLM positions 0..t have draft keys 0..t-1
  p.requests = rows;
  p.q_heads = q_heads_;
  p.kv_heads = kv_heads_;
  p.head_dim = head_dim_;
  p.max_context = static_cast<int>(max_context_);
  p.max_length = max_positions;
  p.scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  p.reduce = kernels::AttentionScoresParams::Reduce::Max;
  p.all_heads = all_heads;
  p.out = out;
  p.out_stride = out_stride;
  p.column_offset = 1;  // key j -> LLM position j + 1; position 0 pinned
  p.workspace = reinterpret_cast<float*>(score_workspace_.ptr);
  p.workspace_bytes = score_workspace_.count;
  kernels::launch_attention_scores(p, stream);
}

}  // namespace specontext
