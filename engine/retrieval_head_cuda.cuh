#pragma once
// SpeContext's retrieval head on the GPU: the arithmetic of engine/retrieval_head.hpp (the EAGLE-3
// draft pruned to what computes its attention weights) with bf16 weights, activations and K cache and
// fp32 accumulation, through the engine's kernels, so that a decode step's selection never leaves the
// device and is captured in the step's CUDA graph.
//
// Rows. Each call takes rows of (token x, feature row f, key position j, request slot): draft key j
// is computed from RMSNorm(embed(x)) ⊕ RMSNorm(fc(f)), EAGLE-3's pairing in which f holds the LLM's
// features of position j and x is token j+1 (see retrieval_head.hpp: key j stands for LLM position
// j+1; position 0 has no key and is pinned). project() appends every row's key to the request's K
// cache and keeps its query; scores() turns the queries of a decode batch into per-position scores.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda_device_array.cuh"
#include "engine/cuda_gemm.cuh"
#include "engine/eagle3_draft.hpp"
#include "engine/retrieval_head.hpp"

namespace specontext {

class RetrievalHeadCuda {
 public:
  // `target_embed` is the LLM's bf16 embedding on the device [vocab, hidden], used when the draft ships
  // none (not copied; it must outlive the head). max_context counts LLM positions; max_rows bounds the
  // rows of one call (a decode batch or a prefill chunk).
  // `input` (engine/retrieval_head.hpp): Embed leaves the fc half of the attention input zero.
  RetrievalHeadCuda(const Eagle3Draft& draft, const bf16_bits* target_embed, int max_requests, std::int64_t max_context,
                    std::int64_t max_rows, CudaGemm gemm, HeadInput input = HeadInput::Eagle);

  std::int64_t feature_width() const { return feature_width_; }
  int kv_heads() const { return kv_heads_; }
  // Bytes this head holds on the device for these sizes (weights, K cache, buffers), for memory plans.
  static double device_bytes(const Eagle3DraftConfig& config, bool own_embedding, int max_requests, std::int64_t max_context,
                             std::int64_t max_rows);

  // ids, key_positions, slots: device int32 [rows]; features: device bf16 [rows, feature_stride].
  void project(const std::int32_t* ids, const bf16_bits* features, std::int64_t feature_stride, const std::int32_t* key_positions,
               const std::int32_t* slots, std::int64_t rows, cudaStream_t stream);
  // After project() of a decode batch (row i = the request entering LLM position lengths[i] - 1):
  // out[i][g][p] for LLM positions p in 0 .. lengths[i] - 1 = the max over the query heads of KV head
  // g's group (all heads when all_heads) of softmax(q Kᵀ/√d) at key p - 1; p = 0 is +inf.
  // out: fp32 [rows][all_heads ? 1 : kv_heads][out_stride]; max_positions bounds every lengths[i].
  void scores(const std::int32_t* slots, const std::int32_t* lengths, int rows, int max_positions, bool all_heads, float* out,
              std::int64_t out_stride, cudaStream_t stream);

 private:
  Eagle3DraftConfig config_;
  CudaGemm gemm_;
  int max_requests_ = 0, q_heads_ = 0, kv_heads_ = 0, head_dim_ = 0;
  std::int64_t hidden_ = 0, feature_width_ = 0, max_context_ = 0, max_rows_ = 0, qk_width_ = 0;
  float eps_ = 1e-6f, attention_factor_ = 1.0f;
  HeadInput input_ = HeadInput::Eagle;

  DeviceArray<bf16_bits> own_embed_, fc_, input_norm_, hidden_norm_, wqk_;  // wqk: [q ; k] rows, [qk_width, 2 hidden]
  const bf16_bits* embed_ = nullptr;
  DeviceArray<float> inv_freq_;
  DeviceArray<bf16_bits> k_cache_;  // [max_requests][kv_heads][max_context][head_dim]
  DeviceArray<float> norm_scratch_;  // fp32 [max_rows, hidden]: the norms' residual input
  DeviceArray<bf16_bits> token_rows_, fc_rows_, input_rows_, qk_rows_;  // [max_rows, hidden | hidden | 2 hidden | qk_width]
  DeviceArray<std::uint8_t> score_workspace_;
};

}  // namespace specontext
