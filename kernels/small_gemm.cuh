#pragma once
// The projections of a decode step with few tokens: Y[t, o] = sum_i X[t, i] * W[o, i] for
// t < tokens (1..16), W bf16 [out, in] row-major and contiguous (nn.Linear's weight), X bf16
// [tokens, x_stride], fp32 accumulation, Y bf16 or fp32 [tokens, y_stride]. At 1..16 tokens the
// op reads W once and does almost no arithmetic per byte, so the goal is the HBM stream rate;
// cuBLAS reaches 2.5-3.7 TB/s of the H200's ~4.5 there (and adds a split-K reduce for the O
// projection). How the kernel streams W is explained in small_gemm.cu.
//
// The epilogue can also apply the kernel that follows a projection in the decode layer, so that
// kernel's launch and its round trip through memory leave the step (bench/README, "Fused
// epilogues"); the results are bit for bit those of a Store launch followed by that kernel:
//   SwiGlu        W is the fused gate_up [2 ffn, in] (gate rows [0, ffn), up rows [ffn, 2 ffn)),
//                 out = 2 ffn with ffn a multiple of 8; Y (bf16) gets [tokens, ffn] =
//                 launch_swiglu's output (kernels/swiglu.cuh) of the bf16 gate_up.
//   RopeKvAppend  W is the fused QKV projection, Y (bf16) = rope.qkv with y_stride = rope.row_stride
//                 and tokens = rope.tokens, out = (q_heads + kv_heads [+ kv_heads with a V cache]) *
//                 head_dim with head_dim a multiple of 16: Y and the caches end as after a Store
//                 launch and launch_rope_kv_append(rope) (kernels/rope_kv_append.cuh).
// Either way a block owns 8 pairs of rows that the activation or the rotation combines (gate j
// and up j; dims i and i + head_dim / 2 of a head), so no result crosses blocks.
//
// Requirements (each violation throws std::invalid_argument naming the field): tokens in [0, 16];
// in a positive multiple of 8; x_stride >= in and a multiple of 8; y_stride >= out; x and w
// 16-byte aligned (16-byte loads); exactly one of y_bf16 / y_f32 set. X and W are read through
// the non-coherent path, so Y must not overlap them and they must not change during the kernel.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rope_kv_append.cuh"

namespace specontext::kernels {

enum class SmallGemmEpilogue : int { Store, SwiGlu, RopeKvAppend };

struct SmallGemmParams {
  const std::uint16_t* x = nullptr;  // bf16 [tokens, x_stride], first `in` columns used
  const std::uint16_t* w = nullptr;  // bf16 [out, in], contiguous
  std::uint16_t* y_bf16 = nullptr;   // bf16 [tokens, y_stride], first `out` columns written; or
  float* y_f32 = nullptr;            // fp32 [tokens, y_stride] (the LM head's logits)
  std::int64_t tokens = 0;           // 0..16
  std::int64_t out = 0;
  std::int64_t in = 0;        // multiple of 8
  std::int64_t x_stride = 0;  // elements, >= in, multiple of 8
  std::int64_t y_stride = 0;  // elements, >= out (SwiGlu: >= out / 2)
  SmallGemmEpilogue epilogue = SmallGemmEpilogue::Store;
  RopeKvAppendParams rope;  // RopeKvAppend only
};

// The parameters for contiguous X [tokens, in] and W [out, in] (x_stride = in, y_stride = out);
// the caller sets Y (and another y_stride or epilogue where it needs one).
inline SmallGemmParams contiguous_small_gemm(const std::uint16_t* x, const std::uint16_t* w, std::int64_t tokens, std::int64_t out,
                                             std::int64_t in) {
  SmallGemmParams p;
  p.x = x;
  p.w = w;
  p.tokens = tokens;
  p.out = out;
  p.in = in;
  p.x_stride = in;
  p.y_stride = out;
  return p;
}

// Throws std::invalid_argument before any CUDA call when the parameters are bad; tokens == 0 or
// out == 0 launches nothing.
void launch_small_gemm(const SmallGemmParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
