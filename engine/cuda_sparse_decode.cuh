#pragma once
// The CUDA backend's sparse decode step (PAPER.md §1, §3; DESIGN.md "One decode step"): which KV
// positions each request and KV head attends to, chosen on the device by a selection policy
// (engine/selection_policy.hpp) and handed to decode attention as index lists, inside the step's
// CUDA graph. The CPU reference of the same semantics is CpuBackend::decode_sparse under a
// PolicyBackend.
//
// Every list is a set of LLM positions in 0..t (t the position of the token entering the step) that
// always contains t: the policy's top-B, plus t when the policy did not choose it (the kernels'
// ensure_last), exactly the set CpuBackend::decode_sparse attends. Lists are [rows][heads][budget + 1]
// int32 with a count per (row, head); batch-level policies (streaming, specontext-batch) write one
// list per row that every KV head reads (head stride 0).
//   full              dense attention (no lists);
//   streaming         sinks + recent window, computed on the host and uploaded before the step;
//   oracle            per layer, attention_scores over the LLM's own keys (mean over the group, t
//                     pinned) then top_b_select: the upper bound;
//   quest             per layer, kernels/quest_pages: page summaries (min/max keys of 16 positions)
//                     kept up to date, the query's bound per page, top_b_select of ceil(B / 16)
//                     pages, expanded to their positions (+ t when its page was not chosen);
//   specontext(-batch) the retrieval head (engine/retrieval_head_cuda.cuh) before the forward:
//                     its scores per KV head (or over all heads), pooled when asked
//                     (kernels/score_pool), then top_b_select, shared by every layer.
// The retrieval head reads the LLM's features (the residual streams entering the draft's aux layers):
// the forward exports them here, by request slot in decode and by chunk row in prefill.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/cuda_device_array.cuh"
#include "engine/cuda_gemm.cuh"
#include "engine/eagle3_draft.hpp"
#include "engine/retrieval_head_cuda.cuh"
#include "engine/selection_policy.hpp"
#include "engine/synthetic_selection.hpp"
#include "kernels/attention_scores.cuh"
#include "kernels/decode_attention.cuh"

namespace specontext {

struct CudaSparseShape {
  int max_requests = 0, q_heads = 0, kv_heads = 0, head_dim = 0, layers = 0;
  std::int64_t max_context = 0, max_rows = 0, hidden = 0;
};

// The LLM's dense attention of a decode-attention launch's queries over its cached keys, each query
// head's softmax averaged over its group (the oracle's ranking, the attention mass's reference, the
// trace recorder's attention): attention_scores' parameters, writing to `out` rows of `out_stride`.
kernels::AttentionScoresParams group_mean_scores(const kernels::DecodeAttentionParams& a, float* out, std::int64_t out_stride,
                                                 const DeviceArray<std::uint8_t>& workspace);

class CudaSparseDecode {
 public:
  // `draft` for specontext*: its weights go to the device; `target_embed` (device) serves a draft
  // without an embedding. Throws ConfigError / std::invalid_argument for a bad budget or a missing draft.
  // `synthetic` (benchmarks; specontext only): its lists replace the head's choice each step, after
  // the head and top-B have run (so their cost stays in the step); it must outlive this object.
  CudaSparseDecode(SelectionPolicy policy, std::int64_t budget, const Eagle3Draft* draft, const bf16_bits* target_embed,
                   const CudaSparseShape& shape, CudaGemm gemm, const SyntheticSelectionStream* synthetic = nullptr,
                   HeadInput head_input = HeadInput::Eagle, ScorePooling pooling = {});
  ~CudaSparseDecode();

  SelectionPolicy policy() const { return policy_; }
  std::int64_t budget() const { return budget_; }  // the budget asked for, capped at max_context (all positions)
  // Device bytes the sparse path adds for these sizes (selection buffers, the head), for memory plans.
  static double device_bytes(SelectionPolicy policy, std::int64_t budget, const Eagle3DraftConfig* draft, const CudaSparseShape& shape,
                             const ScorePooling& pooling = {});

  // Host side, before a decode step is launched (outside the graph): the step's per-row inputs that
  // the device does not derive itself. positions[i] = t of row i.
  void stage_decode(const std::vector<std::int32_t>& positions, cudaStream_t stream);
  // The same for a prefill chunk of one request: positions of its rows.
  void stage_prefill(const std::vector<std::int32_t>& positions, cudaStream_t stream);

  // In the forward, after the residual entering `layer` is complete: stores its rows when `layer` is
  // one of the draft's aux layers (by slot in decode, by row in prefill).
  void export_features(int layer, const float* residual, const std::int32_t* slots, std::int64_t rows, bool prefill, cudaStream_t stream);
  // Decode, before the forward: the retrieval head's key and query, its scores and the lists
  // (specontext*); nothing for the other policies.
  void select_before_forward(const std::int32_t* ids, const std::int32_t* slots, const std::int32_t* lengths, int rows,
                             cudaStream_t stream);
  // Prefill, after the forward of a chunk of one request starting at `first_position` (its ids and
  // slots in the device arrays): the retrieval head's keys of those positions.
  void after_prefill_chunk(std::int64_t first_position, const std::int32_t* ids, const std::int32_t* slots, std::int64_t rows,
                           cudaStream_t stream);
  // Decode attention of `layer`: `a` carries the dense parameters of the layer (q, caches, lengths,
  // output, workspace); the lists of the policy are attached (computed here for the oracle) and the
  // kernel is launched. Policy full launches `a` as it is.
  void attend(int layer, kernels::DecodeAttentionParams a, cudaStream_t stream);

  // From now on, attend() also measures the attention mass its lists capture (a dense
  // attention_scores pass and kernels/list_mass per layer); read with download_attention_mass.
  void enable_attention_mass();
  // The last step's mass per layer, row and KV head ([layers][rows][kv_heads], the mean over the
  // group's query heads of each head's captured share); layers attend() did not see hold stale values.
  // Synchronises `stream`.
  std::vector<float> download_attention_mass(int rows, cudaStream_t stream) const;
  // A request's slot starts over (CudaBackend::reset): Quest forgets its page summaries.
  void reset_request(int slot, cudaStream_t stream);

  // After a step: the lists of rows 0..rows-1 as selections of the policy's top-B (the appended t
  // removed), one per request or, for the per-layer policies, one per layer; Quest's are its pages,
  // as the CPU reference records them. Synchronises `stream`.
  std::vector<std::vector<TokenSelection>> download_selections(int rows, const std::vector<std::int32_t>& positions, cudaStream_t stream) const;

  // Marks retrieval_head and select on this timer when set (not owned).
  void set_timer(class PhaseTimer* timer) { timer_ = timer; }
  // The lists of one layer, [max_requests][list_heads()][list_stride()], and their counts
  // [max_requests][list_heads()] (every layer shares layer 0's except under oracle and quest).
  int list_heads() const;  // KV heads with a list of their own (1 for batch-level policies)
  std::int64_t list_stride() const { return list_stride_; }
  std::int32_t* lists_of_layer(int layer) const;
  std::int32_t* counts_of_layer(int layer) const;

 private:

  void select_quest_pages(int layer, const kernels::DecodeAttentionParams& a, cudaStream_t stream);
  void measure_attention_mass(int layer, const kernels::DecodeAttentionParams& a, cudaStream_t stream);
  bool per_layer() const;
  std::int64_t quest_pages_of_context() const;

  SelectionPolicy policy_;
  std::int64_t budget_;
  std::int64_t page_budget_ = 0;  // quest: pages per list, ceil(budget / 16)
  std::int64_t list_stride_ = 0;  // budget + 1, or page_budget * 16 + 1 for quest
  CudaSparseShape shape_;
  std::unique_ptr<RetrievalHeadCuda> head_;
  std::vector<int> aux_layers_;
  std::int64_t feature_width_ = 0;

  DeviceArray<float> scores_;            // [max_requests][heads][max_context + 1]
  ScorePooling pooling_;                 // specontext*: of the head's scores
  DeviceArray<float> pooled_scores_;     // [max_requests][heads][max_context + 1] when pooling is active
  DeviceArray<std::int32_t> lists_;      // [list layers][max_requests][heads][list_stride()]
  DeviceArray<std::int32_t> counts_;     // [list layers][max_rows][heads]
  DeviceArray<std::int32_t> key_positions_;  // [max_rows]: the head's key index of each row (position - 1)
  DeviceArray<bf16_bits> features_by_slot_;  // [max_requests, feature_width]: the last position's features
  DeviceArray<bf16_bits> chunk_features_;    // [max_rows + 1, feature_width]: row 0 the position before the chunk
  DeviceArray<std::uint8_t> oracle_workspace_;
  // quest: [layers][max_requests][kv_heads][pages of max_context][2][head_dim] page bounds, the pages
  // of each (layer, slot) already summarised, this step's page counts, and the chosen pages
  DeviceArray<bf16_bits> quest_bounds_;
  DeviceArray<std::int32_t> quest_summarised_;  // [layers][max_requests]
  DeviceArray<std::int32_t> quest_page_counts_;  // [max_requests]
  DeviceArray<std::int32_t> quest_pages_;        // [layers][max_requests][kv_heads][page_budget]
  DeviceArray<std::int32_t> quest_chosen_;       // [layers][max_requests * kv_heads]
  // attention mass: the dense scores [max_requests][kv_heads][max_context + 1], their workspace, and
  // the captured mass [layers][max_requests][kv_heads]
  DeviceArray<float> mass_scores_, mass_;
  DeviceArray<std::uint8_t> mass_workspace_;
  std::vector<std::int32_t> host_keys_, host_lists_, host_counts_;  // staging of uploads
  class PhaseTimer* timer_ = nullptr;
  const SyntheticSelectionStream* synthetic_ = nullptr;  // pinned in place while this object lives
  int synthetic_step_ = 0;
  DeviceArray<std::int32_t> synthetic_lists_, synthetic_counts_;  // this step's, copied over the head's in the graph
};

}  // namespace specontext
