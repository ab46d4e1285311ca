#include "engine/cuda_sparse_decode.cuh"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/nvtx.hpp"
#include "engine/phase_timer.cuh"
#include "kernels/attention_scores.cuh"
#include "kernels/copy_rows.cuh"
#include "kernels/list_mass.cuh"
#include "kernels/quest_pages.cuh"
#include "kernels/score_pool.cuh"
#include "kernels/top_b_select.cuh"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

bool batch_level(SelectionPolicy p) { return p == SelectionPolicy::Streaming || p == SelectionPolicy::SpeContextBatch; }
bool uses_scores(SelectionPolicy p) { return p == SelectionPolicy::Oracle || p == SelectionPolicy::Quest || needs_retrieval_head(p); }
bool layer_lists(SelectionPolicy p) { return p == SelectionPolicy::Oracle || p == SelectionPolicy::Quest; }
std::int64_t pages_of(std::int64_t positions) { return (positions + kernels::kQuestPageSize - 1) / kernels::kQuestPageSize; }
// Entries of one list: the budget and the entering token, or, for quest, every position of its pages and the token.
std::int64_t stride_of_lists(SelectionPolicy p, std::int64_t budget) {
  return p == SelectionPolicy::Quest ? pages_of(budget) * kernels::kQuestPageSize + 1 : budget + 1;
}

// The queries, the key cache and the rows of a decode-attention launch, into the parameters of a
// kernel that reads the same (attention_scores, quest_page_scores: the same field names).
template <class Params>
void read_queries_and_keys(const kernels::DecodeAttentionParams& a, Params& p) {
  p.q = a.q;
  p.q_row_stride = a.q_row_stride;
  p.k_cache = a.k_cache;
  p.kv_request_stride = a.kv_request_stride;
  p.kv_head_stride = a.kv_head_stride;
  p.slots = a.slots;
  p.lengths = a.lengths;
  p.requests = a.requests;
  p.q_heads = a.q_heads;
  p.kv_heads = a.kv_heads;
  p.head_dim = a.head_dim;
  p.max_context = a.max_context;
  p.max_length = a.max_length;
}

}  // namespace

kernels::AttentionScoresParams group_mean_scores(const kernels::DecodeAttentionParams& a, float* out, std::int64_t out_stride,
                                                 const DeviceArray<std::uint8_t>& workspace) {
  kernels::AttentionScoresParams s;
  read_queries_and_keys(a, s);
  s.scale = a.scale;
  s.reduce = kernels::AttentionScoresParams::Reduce::Mean;
  s.out = out;
  s.out_stride = out_stride;
  s.workspace = reinterpret_cast<float*>(workspace.ptr);
  s.workspace_bytes = workspace.count;
  return s;
}

int CudaSparseDecode::list_heads() const { return batch_level(policy_) ? 1 : shape_.kv_heads; }
bool CudaSparseDecode::per_layer() const { return layer_lists(policy_); }
std::int64_t CudaSparseDecode::quest_pages_of_context() const { return pages_of(shape_.max_context); }

std::int32_t* CudaSparseDecode::lists_of_layer(int layer) const {
  const std::size_t per_layer_entries = static_cast<std::size_t>(shape_.max_requests) * list_heads() * static_cast<std::size_t>(list_stride());
  return lists_.ptr + (per_layer() ? static_cast<std::size_t>(layer) * per_layer_entries : 0);
}

std::int32_t* CudaSparseDecode::counts_of_layer(int layer) const {
  const std::size_t per_layer_entries = static_cast<std::size_t>(shape_.max_requests) * list_heads();
  return counts_.ptr + (per_layer() ? static_cast<std::size_t>(layer) * per_layer_entries : 0);
}

double CudaSparseDecode::device_bytes(SelectionPolicy policy, std::int64_t budget, const Eagle3DraftConfig* draft, const CudaSparseShape& s,
                                      const ScorePooling& pooling) {
  if (policy == SelectionPolicy::Full) return 0;
  const double heads = batch_level(policy) ? 1.0 : static_cast<double>(s.kv_heads);
  const double list_layers = layer_lists(policy) ? static_cast<double>(s.layers) : 1.0;
  const std::int64_t capped = std::min(budget, s.max_context);
  double bytes = 4.0 * list_layers * s.max_requests * heads * static_cast<double>(stride_of_lists(policy, capped) + 1) + 4.0 * static_cast<double>(s.max_rows);
  if (uses_scores(policy)) bytes += 4.0 * s.max_requests * heads * static_cast<double>(s.max_context + 1);
  if (needs_retrieval_head(policy) && pooling.active()) bytes += 4.0 * s.max_requests * heads * static_cast<double>(s.max_context + 1);
  if (policy == SelectionPolicy::Oracle)
    bytes += static_cast<double>(kernels::attention_scores_workspace_bytes(s.max_requests, s.q_heads, static_cast<int>(s.max_context)));
  if (policy == SelectionPolicy::Quest)  // bf16 min and max per page, the summarised counts, the chosen pages
    bytes += list_layers * s.max_requests * heads *
             (4.0 * static_cast<double>(pages_of(s.max_context)) * s.head_dim + 4.0 * static_cast<double>(pages_of(capped) + 2));
  if (draft) {
    const double fw = static_cast<double>(draft->aux_layers.size()) * static_cast<double>(draft->target_hidden);
    bytes += 2.0 * fw * static_cast<double>(s.max_requests + s.max_rows + 1);
    bytes += RetrievalHeadCuda::device_bytes(*draft, false, s.max_requests, s.max_context, std::max<std::int64_t>(s.max_rows, s.max_requests));
  }
  return bytes;
}

CudaSparseDecode::CudaSparseDecode(SelectionPolicy policy, std::int64_t budget, const Eagle3Draft* draft, const bf16_bits* target_embed,
                                   const CudaSparseShape& shape, CudaGemm gemm, const SyntheticSelectionStream* synthetic,
                                   HeadInput head_input, ScorePooling pooling)
    : policy_(policy),
      budget_(std::min(budget, shape.max_context)),
      page_budget_(pages_of(budget_)),
      list_stride_(stride_of_lists(policy, budget_)),
      shape_(shape),
      synthetic_(synthetic) {
  if (policy == SelectionPolicy::Full) throw std::invalid_argument("CudaSparseDecode: policy full needs no sparse decode");
  if (budget < 1) throw ConfigError("--budget", "", "must be at least 1, got " + std::to_string(budget));
  if (needs_retrieval_head(policy) != (draft != nullptr))
    throw std::invalid_argument(std::string("CudaSparseDecode: policy ") + to_string(policy) +
                                (draft ? " takes no distilled LM" : " needs the distilled LM (--dlm)"));
  const auto requests = static_cast<std::size_t>(shape.max_requests);
  const auto heads = static_cast<std::size_t>(list_heads());
  const std::size_t list_layers = layer_lists(policy) ? static_cast<std::size_t>(shape.layers) : 1;
  lists_ = DeviceArray<std::int32_t>(list_layers * requests * heads * static_cast<std::size_t>(list_stride()));
  counts_ = DeviceArray<std::int32_t>(list_layers * requests * heads);
  key_positions_ = DeviceArray<std::int32_t>(static_cast<std::size_t>(std::max<std::int64_t>(shape.max_rows, shape.max_requests)));
  if (uses_scores(policy)) scores_ = DeviceArray<float>(requests * heads * static_cast<std::size_t>(shape.max_context + 1));
  if (pooling.active()) {
    if (!needs_retrieval_head(policy))
      throw std::invalid_argument(std::string("CudaSparseDecode: score pooling acts on the retrieval head's scores, not policy ") + to_string(policy));
    if (!pooling.valid())
      throw std::invalid_argument("CudaSparseDecode: pooling radius or recent window out of range");
    pooling_ = pooling;
    pooled_scores_ = DeviceArray<float>(scores_.count);
  }
  if (policy == SelectionPolicy::Oracle)
    oracle_workspace_ = DeviceArray<std::uint8_t>(
        kernels::attention_scores_workspace_bytes(shape.max_requests, shape.q_heads, static_cast<int>(shape.max_context)));
  if (policy == SelectionPolicy::Quest) {
    const std::size_t pairs = requests * heads;
    quest_bounds_ = DeviceArray<bf16_bits>(list_layers * pairs * static_cast<std::size_t>(quest_pages_of_context()) * 2 *
                                           static_cast<std::size_t>(shape.head_dim));
    quest_summarised_ = DeviceArray<std::int32_t>(list_layers * requests);
    SPECONTEXT_CUDA_CHECK(cudaMemset(quest_summarised_.ptr, 0, quest_summarised_.count * 4));
    quest_page_counts_ = DeviceArray<std::int32_t>(requests);
    quest_pages_ = DeviceArray<std::int32_t>(list_layers * pairs * static_cast<std::size_t>(page_budget_));
    quest_chosen_ = DeviceArray<std::int32_t>(list_layers * pairs);
  }
  if (draft) {
    aux_layers_ = draft->config.aux_layers;
    head_ = std::make_unique<RetrievalHeadCuda>(*draft, target_embed, shape.max_requests, shape.max_context,
                                                std::max<std::int64_t>(shape.max_rows, shape.max_requests), gemm, head_input);
    feature_width_ = head_->feature_width();
    if (feature_width_ != static_cast<std::int64_t>(aux_layers_.size()) * shape.hidden)
      throw std::invalid_argument("CudaSparseDecode: the draft reads " + std::to_string(feature_width_) + " feature values, the LLM's " +
                                  std::to_string(aux_layers_.size()) + " aux layers give " + std::to_string(aux_layers_.size() * shape.hidden));
    if (head_->kv_heads() != shape.kv_heads) throw std::invalid_argument("CudaSparseDecode: the draft's KV heads differ from the LLM's");
    features_by_slot_ = DeviceArray<bf16_bits>(requests * static_cast<std::size_t>(feature_width_));
    chunk_features_ = DeviceArray<bf16_bits>(static_cast<std::size_t>(std::max<std::int64_t>(shape.max_rows, shape.max_requests) + 1) *
                                             static_cast<std::size_t>(feature_width_));
  }
  if (synthetic) {
    if (policy != SelectionPolicy::SpeContext) throw std::invalid_argument("CudaSparseDecode: a synthetic selection stream replaces specontext's");
    if (synthetic->heads != shape.kv_heads || synthetic->budget != budget_ || synthetic->rows > shape.max_requests)
      throw std::invalid_argument("CudaSparseDecode: the synthetic selection stream's shape does not match the budget and heads");
    // Pinned in place, so that each step's lists reach the device by DMA without a host copy.
    SPECONTEXT_CUDA_CHECK(cudaHostRegister(const_cast<std::int32_t*>(synthetic->lists.data()), synthetic->lists.size() * 4, cudaHostRegisterDefault));
    SPECONTEXT_CUDA_CHECK(cudaHostRegister(const_cast<std::int32_t*>(synthetic->counts.data()), synthetic->counts.size() * 4, cudaHostRegisterDefault));
    synthetic_lists_ = DeviceArray<std::int32_t>(lists_.count);
    synthetic_counts_ = DeviceArray<std::int32_t>(counts_.count);
  }
}

CudaSparseDecode::~CudaSparseDecode() {
  if (synthetic_) {
    cudaHostUnregister(const_cast<std::int32_t*>(synthetic_->lists.data()));
    cudaHostUnregister(const_cast<std::int32_t*>(synthetic_->counts.data()));
  }
}

void CudaSparseDecode::stage_decode(const std::vector<std::int32_t>& positions, cudaStream_t stream) {
  stage_prefill(positions, stream);
  if (synthetic_) {
    if (synthetic_step_ >= synthetic_->steps || static_cast<int>(positions.size()) != synthetic_->rows)
      throw std::invalid_argument("CudaSparseDecode: the synthetic selection stream has " + std::to_string(synthetic_->steps) + " steps of " +
                                  std::to_string(synthetic_->rows) + " rows; step " + std::to_string(synthetic_step_) + " has " +
                                  std::to_string(positions.size()));
    const std::size_t pairs = static_cast<std::size_t>(synthetic_->rows) * synthetic_->heads;
    const std::size_t step = static_cast<std::size_t>(synthetic_step_++);
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(synthetic_lists_.ptr, synthetic_->lists.data() + step * pairs * list_stride(),
                                          pairs * list_stride() * 4, cudaMemcpyHostToDevice, stream));
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(synthetic_counts_.ptr, synthetic_->counts.data() + step * pairs, pairs * 4, cudaMemcpyHostToDevice, stream));
  }
  if (policy_ != SelectionPolicy::Streaming) return;
  // Sinks and recent window: the same for every head, so computed here and uploaded with the inputs.
  const std::size_t stride = static_cast<std::size_t>(list_stride());
  host_lists_.assign(positions.size() * stride, 0);
  host_counts_.assign(positions.size(), 0);
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const std::int32_t t = positions[i];
    TokenSelection s = streaming_selection(1, static_cast<std::int64_t>(t) + 1, budget_);
    if (s.indices.empty() || s.indices.back() != t) s.indices.push_back(t);  // the entering token is always attended
    std::copy(s.indices.begin(), s.indices.end(), host_lists_.begin() + static_cast<std::ptrdiff_t>(i * stride));
    host_counts_[i] = static_cast<std::int32_t>(s.indices.size());
  }
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(lists_.ptr, host_lists_.data(), host_lists_.size() * 4, cudaMemcpyHostToDevice, stream));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(counts_.ptr, host_counts_.data(), host_counts_.size() * 4, cudaMemcpyHostToDevice, stream));
}

void CudaSparseDecode::stage_prefill(const std::vector<std::int32_t>& positions, cudaStream_t stream) {
  if (!head_) return;
  if (positions.size() > key_positions_.count) throw std::invalid_argument("CudaSparseDecode: more rows than staged for");
  host_keys_.resize(positions.size());
  for (std::size_t i = 0; i < positions.size(); ++i) host_keys_[i] = positions[i] - 1;  // draft key j stands for LLM position j + 1
  // From pageable memory the call returns once the source is staged, so the vector may be reused.
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(key_positions_.ptr, host_keys_.data(), host_keys_.size() * 4, cudaMemcpyHostToDevice, stream));
}

void CudaSparseDecode::export_features(int layer, const float* residual, const std::int32_t* slots, std::int64_t rows, bool prefill,
                                       cudaStream_t stream) {
  if (!head_) return;
  for (std::size_t k = 0; k < aux_layers_.size(); ++k) {
    if (aux_layers_[k] != layer) continue;
    kernels::CopyRowsParams c;
    c.src = residual;
    c.src_f32 = true;
    c.src_stride = shape_.hidden;
    c.cols = shape_.hidden;
    c.rows = rows;
    c.dst_stride = feature_width_;
    const std::int64_t column = static_cast<std::int64_t>(k) * shape_.hidden;
    if (prefill) {
      c.dst = chunk_features_.ptr + feature_width_ + column;  // rows 1..rows: row 0 is the position before the chunk
    } else {
      c.dst = features_by_slot_.ptr + column;
      c.dst_rows = slots;
    }
    kernels::launch_copy_rows(c, stream);
  }
}

void CudaSparseDecode::select_before_forward(const std::int32_t* ids, const std::int32_t* slots, const std::int32_t* lengths, int rows,
                                             cudaStream_t stream) {
  if (!head_) return;
  std::optional<NvtxRange> range(std::in_place, "retrieval_head");
  // The features of each request's previous position, gathered into batch order.
  kernels::CopyRowsParams g;
  g.src = features_by_slot_.ptr;
  g.src_f32 = false;
  g.src_stride = feature_width_;
  g.src_rows = slots;
  g.dst = chunk_features_.ptr;
  g.dst_stride = feature_width_;
  g.rows = rows;
  g.cols = feature_width_;
  kernels::launch_copy_rows(g, stream);
  head_->project(ids, chunk_features_.ptr, feature_width_, key_positions_.ptr, slots, rows, stream);
  const std::int64_t score_stride = shape_.max_context + 1;
  head_->scores(slots, lengths, rows, static_cast<int>(shape_.max_context), batch_level(policy_), scores_.ptr, score_stride, stream);
  if (timer_) timer_->lap(StepPhase::RetrievalHead, stream);
  range.emplace("select");
  const float* ranked = scores_.ptr;
  if (pooling_.active()) {
    kernels::ScorePoolParams sp;
    sp.in = scores_.ptr;
    sp.out = pooled_scores_.ptr;
    sp.score_stride = score_stride;
    sp.lengths = lengths;
    sp.rows = rows * list_heads();
    sp.rows_per_request = list_heads();
    sp.max_positions = static_cast<int>(shape_.max_context);
    sp.pooling = pooling_;
    kernels::launch_score_pool(sp, stream);
    ranked = pooled_scores_.ptr;
  }
  kernels::TopBSelectParams t;
  t.scores = ranked;
  t.score_stride = score_stride;
  t.lengths = lengths;
  t.rows = rows * list_heads();
  t.rows_per_request = list_heads();
  t.max_positions = static_cast<int>(shape_.max_context);
  t.budget = static_cast<int>(budget_);
  t.ensure_last = true;
  t.indices = lists_of_layer(0);
  t.index_stride = list_stride();
  t.counts = counts_of_layer(0);
  kernels::launch_top_b_select(t, stream);
  if (synthetic_) {
    const std::size_t pairs = static_cast<std::size_t>(rows) * list_heads();
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(lists_.ptr, synthetic_lists_.ptr, pairs * list_stride() * 4, cudaMemcpyDeviceToDevice, stream));
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(counts_.ptr, synthetic_counts_.ptr, pairs * 4, cudaMemcpyDeviceToDevice, stream));
  }
  if (timer_) timer_->lap(StepPhase::Select, stream);
}

void CudaSparseDecode::after_prefill_chunk(std::int64_t first_position, const std::int32_t* ids, const std::int32_t* slots, std::int64_t rows,
                                           cudaStream_t stream) {
  if (!head_ || rows <= 0) return;
  kernels::CopyRowsParams c;
  c.src_f32 = false;
  c.src_stride = feature_width_;
  c.dst_stride = feature_width_;
  c.rows = 1;
  c.cols = feature_width_;
  if (first_position > 0) {  // row 0: the features of the position before the chunk
    c.src = features_by_slot_.ptr;
    c.src_rows = slots;
    c.dst = chunk_features_.ptr;
    kernels::launch_copy_rows(c, stream);
  }
  // Position 0 has no key (it pairs with no earlier features): the chunk that starts the prompt skips it.
  const std::int64_t skip = first_position == 0 ? 1 : 0;
  head_->project(ids + skip, chunk_features_.ptr + skip * feature_width_, feature_width_, key_positions_.ptr + skip, slots + skip, rows - skip,
                 stream);
  // The chunk's last features pair with the next token (the next chunk's first or the first decode step's).
  c.src = chunk_features_.ptr + rows * feature_width_;
  c.src_rows = nullptr;
  c.dst = features_by_slot_.ptr;
  c.dst_rows = slots;
  kernels::launch_copy_rows(c, stream);
}

void CudaSparseDecode::reset_request(int slot, cudaStream_t stream) {
  if (policy_ != SelectionPolicy::Quest) return;
  for (int l = 0; l < shape_.layers; ++l)
    SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(quest_summarised_.ptr + static_cast<std::size_t>(l) * shape_.max_requests + slot, 0, 4, stream));
}

void CudaSparseDecode::select_quest_pages(int layer, const kernels::DecodeAttentionParams& a, cudaStream_t stream) {
  const std::int64_t pairs = static_cast<std::int64_t>(shape_.max_requests) * shape_.kv_heads;
  const std::int64_t head_stride = quest_pages_of_context() * 2 * shape_.head_dim;
  kernels::QuestPageScoresParams q;
  read_queries_and_keys(a, q);
  q.bounds = quest_bounds_.ptr + static_cast<std::size_t>(layer) * static_cast<std::size_t>(pairs * head_stride);
  q.bounds_head_stride = head_stride;
  q.bounds_request_stride = shape_.kv_heads * head_stride;
  q.summarised = quest_summarised_.ptr + static_cast<std::size_t>(layer) * shape_.max_requests;
  q.scores = scores_.ptr;
  q.score_stride = shape_.max_context + 1;
  q.page_counts = quest_page_counts_.ptr;
  kernels::launch_quest_page_scores(q, stream);
  std::int32_t* pages = quest_pages_.ptr + static_cast<std::size_t>(layer) * static_cast<std::size_t>(pairs * page_budget_);
  std::int32_t* chosen = quest_chosen_.ptr + static_cast<std::size_t>(layer) * static_cast<std::size_t>(pairs);
  const int max_pages = static_cast<int>(pages_of(a.max_length > 0 ? std::min(a.max_length, a.max_context) : a.max_context));
  kernels::TopBSelectParams t;
  t.scores = scores_.ptr;
  t.score_stride = q.score_stride;
  t.lengths = quest_page_counts_.ptr;
  t.rows = a.requests * shape_.kv_heads;
  t.rows_per_request = shape_.kv_heads;
  t.max_positions = max_pages;
  t.budget = static_cast<int>(page_budget_);
  t.indices = pages;
  t.index_stride = page_budget_;
  t.counts = chosen;
  kernels::launch_top_b_select(t, stream);
  kernels::QuestExpandParams e;
  e.pages = pages;
  e.page_head_stride = page_budget_;
  e.page_request_stride = shape_.kv_heads * page_budget_;
  e.page_counts = chosen;
  e.lengths = a.lengths;
  e.requests = a.requests;
  e.kv_heads = shape_.kv_heads;
  e.max_pages = static_cast<int>(page_budget_);
  e.positions = lists_of_layer(layer);
  e.position_head_stride = list_stride();
  e.position_request_stride = shape_.kv_heads * list_stride();
  e.position_counts = counts_of_layer(layer);
  kernels::launch_quest_expand_pages(e, stream);
}

void CudaSparseDecode::enable_attention_mass() {
  const auto pairs = static_cast<std::size_t>(shape_.max_requests) * static_cast<std::size_t>(shape_.kv_heads);
  mass_scores_ = DeviceArray<float>(pairs * static_cast<std::size_t>(shape_.max_context + 1));
  mass_ = DeviceArray<float>(static_cast<std::size_t>(shape_.layers) * pairs);
  mass_workspace_ =
      DeviceArray<std::uint8_t>(kernels::attention_scores_workspace_bytes(shape_.max_requests, shape_.q_heads, static_cast<int>(shape_.max_context)));
}

void CudaSparseDecode::measure_attention_mass(int layer, const kernels::DecodeAttentionParams& a, cudaStream_t stream) {
  // Every head's dense softmax over all cached positions (t included, nothing pinned), mean over the group.
  kernels::AttentionScoresParams s = group_mean_scores(a, mass_scores_.ptr, shape_.max_context + 1, mass_workspace_);
  kernels::launch_attention_scores(s, stream);
  const int heads = list_heads();
  kernels::ListMassParams m;
  m.scores = mass_scores_.ptr;
  m.score_stride = s.out_stride;
  m.lists = lists_of_layer(layer);
  m.list_request_stride = heads * list_stride();
  m.list_head_stride = heads == 1 ? 0 : list_stride();
  m.counts = counts_of_layer(layer);
  m.count_request_stride = heads;
  m.count_head_stride = heads == 1 ? 0 : 1;
  m.requests = a.requests;
  m.kv_heads = shape_.kv_heads;
  m.out = mass_.ptr + static_cast<std::size_t>(layer) * shape_.max_requests * shape_.kv_heads;
  kernels::launch_list_mass(m, stream);
}

std::vector<float> CudaSparseDecode::download_attention_mass(int rows, cudaStream_t stream) const {
  if (!mass_.ptr) throw std::logic_error("CudaSparseDecode: the attention mass is not measured (enable_attention_mass)");
  const std::size_t pairs = static_cast<std::size_t>(rows) * shape_.kv_heads, stride = static_cast<std::size_t>(shape_.max_requests) * shape_.kv_heads;
  std::vector<float> out(static_cast<std::size_t>(shape_.layers) * pairs);
  for (int l = 0; l < shape_.layers; ++l)
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(out.data() + l * pairs, mass_.ptr + l * stride, pairs * 4, cudaMemcpyDeviceToHost, stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return out;
}

void CudaSparseDecode::attend(int layer, kernels::DecodeAttentionParams a, cudaStream_t stream) {
  if (policy_ == SelectionPolicy::Quest) select_quest_pages(layer, a, stream);
  if (policy_ == SelectionPolicy::Oracle) {
    // The LLM's own top-B at this layer: softmax per query head, mean over the group, t pinned.
    kernels::AttentionScoresParams s = group_mean_scores(a, scores_.ptr, shape_.max_context + 1, oracle_workspace_);
    s.pin_last = true;
    kernels::launch_attention_scores(s, stream);
    kernels::TopBSelectParams t;
    t.scores = scores_.ptr;
    t.score_stride = s.out_stride;
    t.lengths = a.lengths;
    t.rows = a.requests * list_heads();
    t.rows_per_request = list_heads();
    t.max_positions = static_cast<int>(shape_.max_context);
    t.budget = static_cast<int>(budget_);
    t.ensure_last = true;
    t.indices = lists_of_layer(layer);
    t.index_stride = list_stride();
    t.counts = counts_of_layer(layer);
    kernels::launch_top_b_select(t, stream);
  }
  if (mass_.ptr) measure_attention_mass(layer, a, stream);
  const int heads = list_heads();
  a.indices = lists_of_layer(layer);
  a.index_request_stride = heads * list_stride();
  a.index_head_stride = heads == 1 ? 0 : list_stride();
  a.index_counts = counts_of_layer(layer);
  a.count_request_stride = heads;
  a.count_head_stride = heads == 1 ? 0 : 1;
  a.max_length = static_cast<int>(std::min<std::int64_t>(list_stride(), shape_.max_context));
  kernels::launch_decode_attention(a, stream);
}

std::vector<std::vector<TokenSelection>> CudaSparseDecode::download_selections(int rows, const std::vector<std::int32_t>& positions,
                                                                               cudaStream_t stream) const {
  const bool quest = policy_ == SelectionPolicy::Quest;
  const int layers = per_layer() ? shape_.layers : 1;
  const int heads = list_heads();
  const std::size_t stride = static_cast<std::size_t>(quest ? page_budget_ : list_stride());
  const std::size_t pairs = static_cast<std::size_t>(shape_.max_requests) * heads;
  std::vector<std::vector<TokenSelection>> out(static_cast<std::size_t>(rows));
  std::vector<std::int32_t> lists(static_cast<std::size_t>(rows) * heads * stride), counts(static_cast<std::size_t>(rows) * heads);
  for (int l = 0; l < layers; ++l) {
    const std::int32_t* layer_lists_ptr = quest ? quest_pages_.ptr + l * pairs * stride : lists_of_layer(l);
    const std::int32_t* layer_counts_ptr = quest ? quest_chosen_.ptr + l * pairs : counts_of_layer(l);
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(lists.data(), layer_lists_ptr, lists.size() * 4, cudaMemcpyDeviceToHost, stream));
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(counts.data(), layer_counts_ptr, counts.size() * 4, cudaMemcpyDeviceToHost, stream));
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < rows; ++i) {
      const std::int64_t t = positions.at(static_cast<std::size_t>(i));
      // The policy's own top-B before t was appended; quest's pages (it appends nothing to them).
      const std::int64_t chosen = quest ? std::min<std::int64_t>(page_budget_, pages_of(t + 1)) : std::min<std::int64_t>(budget_, t + 1);
      TokenSelection s;
      s.kv_heads = shape_.kv_heads;
      s.count = chosen;
      for (int g = 0; g < shape_.kv_heads; ++g) {
        const std::size_t row = static_cast<std::size_t>(i) * heads + (heads == 1 ? 0 : g);
        if (counts[row] < chosen || counts[row] > chosen + (quest ? 0 : 1))
          throw std::logic_error("CudaSparseDecode: row " + std::to_string(i) + " head " + std::to_string(g) + " lists " +
                                 std::to_string(counts[row]) + " positions, expected " + std::to_string(chosen) + " or one more");
        s.indices.insert(s.indices.end(), lists.begin() + static_cast<std::ptrdiff_t>(row * stride),
                         lists.begin() + static_cast<std::ptrdiff_t>(row * stride + chosen));
      }
      out[static_cast<std::size_t>(i)].push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace specontext
