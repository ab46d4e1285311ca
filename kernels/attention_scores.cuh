#pragma once
// Attention scores of one new query token per request over its cached keys, for token selection
// (SpeContext's retrieval head, and the oracle policy): for every query head h the softmax over
// the keys of scale * q_h . k_j (each head normalised over its own keys), then reduced over the
// query heads of each output row (max or mean), written as fp32 probabilities in [0, 1].
//
// Three phases in two kernels, all sized on the host (lengths stay on the device; the launch may
// be captured in a CUDA graph): (1) split-K over (request, KV head, chunk of keys), all query
// heads of the GQA group in registers so every K byte is read from HBM once, writes each key's
// fp32 logit per query head and each chunk's (max, sum of exp) per head to the workspace;
// (2) each block of the second kernel merges those partials into the log-sum-exp of the heads it
// needs and (3) streams the logits of its range of keys, writing reduce_h exp(logit_h - lse_h).
//
// Shapes (bf16 tensors are std::uint16_t bit patterns here; __nv_bfloat16 on the device):
//   q          [requests, q_row_stride]; query head h of request i at q[i * q_row_stride + h * head_dim ..]
//              (e.g. the fused QKV buffer, rotated by RoPE)
//   k_cache    [max_requests][kv_heads][max_context][head_dim], strides in elements: element
//              (slot, kv_head, key, d) at slot * kv_request_stride + kv_head * kv_head_stride
//              + key * head_dim + d (keys stored after RoPE); no V is read
//   slots      int32 [requests]: cache row of request i
//   lengths    int32 [requests]: request i has keys(i) = clamp(lengths[i] + length_offset, 0, L)
//              keys 0 .. keys(i) - 1, with L = max_length if set (and <= max_context), else max_context
//   out        fp32 [requests][out_rows][out_stride], out_rows = all_heads ? 1 : kv_heads: row
//              (i, g) column column_offset + j holds key j's score for j < keys(i); columns
//              0 .. column_offset - 1 are +inf (pinned), and with pin_last so is column
//              column_offset + keys(i) - 1 (when keys(i) > 0); columns >= column_offset + keys(i)
//              are not written. Row g reduces query heads g * group .. g * group + group - 1
//              (group = q_heads / kv_heads); with all_heads the single row reduces every head.
//   workspace  fp32, attention_scores_workspace_bytes(requests, q_heads, max_context) bytes,
//              16-byte aligned; contents need no initialisation and are overwritten
// Query head h reads KV head h / group (GQA; MQA is kv_heads = 1, MHA equal counts). head_dim is
// 32, 64 or 128; q and k_cache 16-byte aligned, q_row_stride and the KV strides multiples of 8
// elements; q_heads <= 256, requests <= 65535.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace specontext::kernels {

struct AttentionScoresParams {
  enum class Reduce { Max, Mean };

  const std::uint16_t* q = nullptr;
  std::int64_t q_row_stride = 0;
  const std::uint16_t* k_cache = nullptr;
  std::int64_t kv_request_stride = 0;
  std::int64_t kv_head_stride = 0;
  const std::int32_t* slots = nullptr;    // device, [requests]
  const std::int32_t* lengths = nullptr;  // device, [requests]
  // Added to every length before clamping (e.g. -1: the newest cached key is not scored).
  int length_offset = 0;
  int requests = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_context = 0;  // keys per cache row; key counts are clamped to it
  // Optional host-side upper bound on every key count (0: max_context). The lengths live on the
  // device, so both grids are sized from this bound; a tight one saves launching empty blocks.
  // Keys at or beyond it are ignored, so it must really bound the counts.
  int max_length = 0;
  float scale = 0.0f;  // softmax scale, normally 1 / sqrt(head_dim)
  Reduce reduce = Reduce::Max;  // over the query heads of each output row
  bool all_heads = false;       // one row per request over every query head, instead of one per KV head
  float* out = nullptr;         // device, [requests][out_rows][out_stride]
  std::int64_t out_stride = 0;  // elements, >= max_context + column_offset
  int column_offset = 0;        // >= 0; key j's score goes to column j + column_offset
  bool pin_last = false;        // the last key's column becomes +inf after the reduction
  float* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// Bytes of workspace a launch with these sizes needs (independent of kv_heads, of the reduction
// and of the actual lengths): requests * q_heads * (round_up(max_context, 4) + 2 * ceil(max_context
// / 128)) * 4, i.e. the fp32 logits of every (request, query head, key) plus 1/64 of that for the
// per-chunk partials; 0 only when there is nothing to do.
std::size_t attention_scores_workspace_bytes(int requests, int q_heads, int max_context);

// Checks the parameters (std::invalid_argument "attention_scores: <what>", before any CUDA call)
// and enqueues both kernels on `stream`: no host synchronisation, no allocation. The first call
// on a device raises the split kernel's shared-memory limit (cudaFuncSetAttribute, not a stream
// operation), so it may run during capture.
void launch_attention_scores(const AttentionScoresParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
