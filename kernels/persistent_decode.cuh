#pragma once
// The whole dense decode step of one request in one kernel: embedding, every layer (RMSNorm, QKV
// + RoPE + KV append, decode attention, O, RMSNorm, gate_up + SwiGLU, down) and the final norm and
// LM head, with the projections' weights and attention's K/V history streamed by a producer warp
// per SM that never waits for the activations. Why, how, and what it measured (slower than the
// chain on an H100, so opt-in) is in persistent_decode.cu.
//
// Model: Llama-style layers (no QKV bias, no q/k norms), head_dim a multiple of 32 and <= 256,
// hidden, q_dim and ffn multiples of 8, bf16 weights [out, in] contiguous (nn.Linear's), the QKV
// and gate_up projections fused as the decode chain keeps them (engine/cuda_backend.cu). Results
// are those of the kernel chain up to the order of fp32 sums: the same bf16 roundings at the same
// places (the normed input, Q/K/V after RoPE, the attention output, each projection's output
// before the residual add, the SwiGLU activation), the logits in fp32.
//
// Needs sm_90 (bulk asynchronous copies and mbarriers) and every block of the grid resident at
// once (a grid-wide barrier between phases): launched cooperatively, one block per SM.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace specontext::kernels {

// One layer's weights and caches. k_cache / v_cache hold [requests][kv_heads][capacity][head_dim].
struct PersistentDecodeLayer {
  const std::uint16_t* wqkv = nullptr;      // [q_dim + 2 kv_dim, hidden]
  const std::uint16_t* wo = nullptr;        // [hidden, q_dim]
  const std::uint16_t* wgate_up = nullptr;  // [2 ffn, hidden]: gate rows, then up rows
  const std::uint16_t* wdown = nullptr;     // [hidden, ffn]
  const std::uint16_t* input_norm = nullptr;
  const std::uint16_t* post_norm = nullptr;
  std::uint16_t* k_cache = nullptr;
  std::uint16_t* v_cache = nullptr;
  std::int64_t kv_request_stride = 0;  // elements: kv_heads x capacity x head_dim
  std::int64_t kv_head_stride = 0;     // elements: capacity x head_dim
};

struct PersistentDecodeParams {
  const PersistentDecodeLayer* layers = nullptr;  // device array of `layer_count`
  int layer_count = 0;
  const std::uint16_t* embed = nullptr;       // [vocab, hidden]
  const std::uint16_t* final_norm = nullptr;  // [hidden]
  const std::uint16_t* lm_head = nullptr;     // [vocab, hidden] (the embedding when tied)
  // The step's one request: its token, cache slot, position (the new key's row) and length
  // (position + 1: the keys attention reads), device scalars as the decode chain uploads them.
  const std::int32_t* ids = nullptr;
  const std::int32_t* slots = nullptr;
  const std::int32_t* positions = nullptr;
  const std::int32_t* lengths = nullptr;
  const float* inv_freq = nullptr;  // [head_dim / 2]
  float attention_factor = 1.0f;
  float eps = 1e-5f;
  float scale = 0.0f;  // attention's score scale, 1 / sqrt(head_dim)
  int hidden = 0, q_heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  // Device buffers the kernel owns for the step (persistent_decode_workspace_bytes).
  float* residual = nullptr;          // [hidden]
  std::uint16_t* qkv = nullptr;       // [q_dim + 2 kv_dim]
  std::uint16_t* attn_out = nullptr;  // [q_dim]
  std::uint16_t* act = nullptr;       // [ffn]
  float* logits = nullptr;            // [vocab]
  void* workspace = nullptr;          // attention partials and the grid barrier's counter
  std::size_t workspace_bytes = 0;
  // Diagnostics, or null: block 0's %globaltimer (ns) at the start, after the embedding, at
  // kTimelineMarksPerLayer points of each layer and at the end (persistent_decode_timeline_marks).
  std::uint64_t* timeline = nullptr;
};

// A layer's timeline marks, each at the end of: the input norm, the QKV projection, its epilogue and
// barrier, the attention partials, their barrier, the merge and its barrier, the O projection (with
// its input's copy), its epilogue and barrier, the post norm and gate_up, its epilogue and barrier,
// down (with its input's copy), its epilogue and barrier.
constexpr int kTimelineMarksPerLayer = 12;
inline int persistent_decode_timeline_marks(int layers) { return 3 + kTimelineMarksPerLayer * layers; }

// Whether this device and shape can run the kernel: null when it can, else why not (sm_90 or
// newer, the shape rules above, the shared memory the ring needs, one block resident per SM).
const char* persistent_decode_unsupported(const PersistentDecodeParams& p);

// The workspace the launch needs on the current device.
std::size_t persistent_decode_workspace_bytes(int q_heads, int kv_heads, int head_dim);

// Zeroes the barrier counter and launches one step (both on `stream`, so the pair can be captured
// in a CUDA graph). Throws std::invalid_argument naming the field when the parameters are bad, and
// when persistent_decode_unsupported() says why it cannot run.
void launch_persistent_decode(const PersistentDecodeParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
