#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention_checks.hpp"
#include "kernels/cp_async.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/mma.cuh"
#include "kernels/prefill_attention.cuh"

namespace specontext::kernels {
namespace {

// Why this shape: prefill attention is matrix-bound (a 64-query tile does 4 * 64 * head_dim FLOP
// per key byte pair), so the products go through mma.sync m16n8k16 (bf16 in, fp32 accumulate),
// FlashAttention-2 style: a block owns 64 consecutive query rows of one query head, 4 warps of 16
// rows each; Q stays in registers as A fragments, S = Q K^T and the softmax stay in registers,
// P is re-packed to bf16 A fragments in place (the accumulator layout of two adjacent n-tiles is
// the A layout of one k-step) and multiplied by V fetched with ldmatrix.trans. K and V tiles of
// 64 keys are staged through shared memory by cp.async, one buffer each, pipelined so that the
// next K tile loads during softmax and P V, and the next V tile during Q K^T. Rows are padded by
// 16 bytes, which makes both the 32-bit K fragment reads and the ldmatrix rows bank-conflict free.
// The query heads of one GQA group are adjacent in blockIdx.x, so their K/V tiles hit in L2.
// (wgmma/TMA would be faster still on Hopper; prefill runs once per prompt, so this is the
// simpler portable path.)
constexpr int kThreads = 128;
constexpr int kRows = 64;  // query rows per block (16 per warp)
constexpr int kKeys = 64;  // keys per tile
constexpr float kLog2e = 1.4426950408889634f;

// Grid: x = query head, y = tile of 64 consecutive token rows.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) prefill_attention_kernel(PrefillAttentionParams p) {
  constexpr int kStride = kHeadDim + 8;  // padded smem row, elements
  constexpr int kVecs = kKeys * kHeadDim / 8;
  constexpr int kKSteps = kHeadDim / 16;  // k-steps of Q K^T
  constexpr int kDTiles = kHeadDim / 8;   // n-tiles of the output
  __shared__ __align__(16) std::uint16_t sk[kKeys * kStride];
  __shared__ __align__(16) std::uint16_t sv[kKeys * kStride];
  __shared__ int sm_slot[kRows], sm_pos[kRows];

  const int h = blockIdx.x;
  const int kvh = h / (p.q_heads / p.kv_heads);
  const int tile0 = blockIdx.y * kRows;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, tig = lane % 4;

  if (tid < kRows) {
    const int row = tile0 + tid;
    int slot = -1, pos = -1;
    if (row < p.tokens) {
      slot = p.slots[row];
      pos = min(p.positions[row], p.max_context - 1);
      if (slot < 0 || pos < 0) slot = -1, pos = -1;
    }
    sm_slot[tid] = slot;
    sm_pos[tid] = pos;
  }

  // Q A-fragments of this warp's 16 rows (a0/a2: row g, a1/a3: row g + 8).
  const int wrow = warp * 16;
  unsigned qa[kKSteps][4];
  {
    const int r0 = tile0 + wrow + g, r1 = r0 + 8;
    const std::uint16_t* q0 = p.q + static_cast<std::int64_t>(r0) * p.q_row_stride + static_cast<std::int64_t>(h) * kHeadDim;
    const std::uint16_t* q1 = p.q + static_cast<std::int64_t>(r1) * p.q_row_stride + static_cast<std::int64_t>(h) * kHeadDim;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      const int c = ks * 16 + tig * 2;
      qa[ks][0] = r0 < p.tokens ? *reinterpret_cast<const unsigned*>(q0 + c) : 0u;
      qa[ks][1] = r1 < p.tokens ? *reinterpret_cast<const unsigned*>(q1 + c) : 0u;
      qa[ks][2] = r0 < p.tokens ? *reinterpret_cast<const unsigned*>(q0 + c + 8) : 0u;
      qa[ks][3] = r1 < p.tokens ? *reinterpret_cast<const unsigned*>(q1 + c + 8) : 0u;
    }
  }

  float o[kDTiles][4];
#pragma unroll
  for (int n = 0; n < kDTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of rows g and g + 8 (log2 units)
  float l[2] = {0.0f, 0.0f};            // this thread's part of the running sums
  const float sscale = p.scale * kLog2e;
  __syncthreads();

  const int my_row0 = wrow + g, my_row1 = wrow + g + 8;
  // A tile usually holds one request; at request boundaries it holds runs of rows with the same
  // slot, processed one after another with the other rows masked (their softmax state is kept).
  int run_begin = 0;
  while (run_begin < kRows) {
    const int slot = sm_slot[run_begin];
    int run_end = run_begin + 1;
    while (run_end < kRows && sm_slot[run_end] == slot) ++run_end;
    if (slot < 0) {
      run_begin = run_end;
      continue;
    }
    int kmax = 0;  // keys needed by this run: 0 .. max position
    for (int i = run_begin; i < run_end; ++i) kmax = max(kmax, sm_pos[i] + 1);
    const bool warp_active = run_begin < wrow + 16 && run_end > wrow;
    const int pos0 = (my_row0 >= run_begin && my_row0 < run_end) ? sm_pos[my_row0] : -1;
    const int pos1 = (my_row1 >= run_begin && my_row1 < run_end) ? sm_pos[my_row1] : -1;

    const std::int64_t base = static_cast<std::int64_t>(slot) * p.kv_request_stride + kvh * p.kv_head_stride;
    const std::uint16_t* kbase = p.k_cache + base;
    const std::uint16_t* vbase = p.v_cache + base;
    auto load_tile = [&](std::uint16_t* dst, const std::uint16_t* src, int kt) {
#pragma unroll
      for (int v = tid; v < kVecs; v += kThreads) {
        const int row = v / (kHeadDim / 8), col = (v % (kHeadDim / 8)) * 8;
        const int key = kt + row;
        const bool ok = key < kmax;
        cp_async16<false>(dst + row * kStride + col, ok ? src + static_cast<std::int64_t>(key) * kHeadDim + col : src, ok);
      }
      cp_async_commit();
    };

    load_tile(sk, kbase, 0);
    load_tile(sv, vbase, 0);
    for (int kt = 0; kt < kmax; kt += kKeys) {
      const bool more = kt + kKeys < kmax;
      cp_async_wait<1>();  // K(kt) landed; V(kt) may still be in flight
      __syncthreads();

      float s[kKeys / 8][4];
      if (warp_active) {
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
          for (int n = 0; n < kKeys / 8; ++n) {
            const std::uint16_t* krow = sk + (n * 8 + g) * kStride + ks * 16 + tig * 2;
            mma_bf16(s[n], qa[ks], *reinterpret_cast<const unsigned*>(krow), *reinterpret_cast<const unsigned*>(krow + 8));
          }
        }
      }
      __syncthreads();  // every warp is done with K(kt)
      if (more) load_tile(sk, kbase, kt + kKeys);

      unsigned pa[kKeys / 16][4];
      if (warp_active) {
        float mx0 = m[0], mx1 = m[1];
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) {
          const int key = kt + n * 8 + tig * 2;
          s[n][0] = key <= pos0 ? s[n][0] * sscale : -INFINITY;
          s[n][1] = key + 1 <= pos0 ? s[n][1] * sscale : -INFINITY;
          s[n][2] = key <= pos1 ? s[n][2] * sscale : -INFINITY;
          s[n][3] = key + 1 <= pos1 ? s[n][3] * sscale : -INFINITY;
          mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
          mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
        // The four threads of a quad hold one row between them.
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // A row with no visible key yet keeps max -inf; use 0 as reference so nothing is NaN.
        const float ref0 = mx0 == -INFINITY ? 0.0f : mx0, ref1 = mx1 == -INFINITY ? 0.0f : mx1;
        const float a0 = exp2f(m[0] - ref0), a1 = exp2f(m[1] - ref1);
        m[0] = mx0;
        m[1] = mx1;
        l[0] *= a0;
        l[1] *= a1;
#pragma unroll
        for (int n = 0; n < kDTiles; ++n) {
          o[n][0] *= a0;
          o[n][1] *= a0;
          o[n][2] *= a1;
          o[n][3] *= a1;
        }
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) {
          s[n][0] = exp2f(s[n][0] - ref0);
          s[n][1] = exp2f(s[n][1] - ref0);
          s[n][2] = exp2f(s[n][2] - ref1);
          s[n][3] = exp2f(s[n][3] - ref1);
          l[0] += s[n][0] + s[n][1];
          l[1] += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int j = 0; j < kKeys / 16; ++j) {
          pa[j][0] = pack_bf16(s[2 * j][0], s[2 * j][1]);
          pa[j][1] = pack_bf16(s[2 * j][2], s[2 * j][3]);
          pa[j][2] = pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
          pa[j][3] = pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
        }
      }

      if (more)
        cp_async_wait<1>();  // V(kt) landed; K(kt + 1) may still be in flight
      else
        cp_async_wait<0>();
      __syncthreads();
      if (warp_active) {
#pragma unroll
        for (int j = 0; j < kKeys / 16; ++j) {
#pragma unroll
          for (int dp = 0; dp < kHeadDim / 16; ++dp) {
            unsigned b[4];
            const int key = j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
            ldmatrix_x4_trans(b, sv + key * kStride + dp * 16 + (lane >> 4) * 8);
            mma_bf16(o[2 * dp], pa[j], b[0], b[1]);
            mma_bf16(o[2 * dp + 1], pa[j], b[2], b[3]);
          }
        }
      }
      __syncthreads();  // every warp is done with V(kt)
      if (more) load_tile(sv, vbase, kt + kKeys);
    }
    run_begin = run_end;
  }

  l[0] += __shfl_xor_sync(0xffffffffu, l[0], 1);
  l[0] += __shfl_xor_sync(0xffffffffu, l[0], 2);
  l[1] += __shfl_xor_sync(0xffffffffu, l[1], 1);
  l[1] += __shfl_xor_sync(0xffffffffu, l[1], 2);
  const float inv0 = l[0] > 0.0f ? 1.0f / l[0] : 0.0f, inv1 = l[1] > 0.0f ? 1.0f / l[1] : 0.0f;
  const int r0 = tile0 + my_row0, r1 = tile0 + my_row1;
  std::uint16_t* out0 = p.out + static_cast<std::int64_t>(r0) * p.out_row_stride + static_cast<std::int64_t>(h) * kHeadDim;
  std::uint16_t* out1 = p.out + static_cast<std::int64_t>(r1) * p.out_row_stride + static_cast<std::int64_t>(h) * kHeadDim;
#pragma unroll
  for (int n = 0; n < kDTiles; ++n) {
    const int c = n * 8 + tig * 2;
    if (r0 < p.tokens) *reinterpret_cast<unsigned*>(out0 + c) = pack_bf16(o[n][0] * inv0, o[n][1] * inv0);
    if (r1 < p.tokens) *reinterpret_cast<unsigned*>(out1 + c) = pack_bf16(o[n][2] * inv1, o[n][3] * inv1);
  }
}

#define PREFILL_REQUIRE(ok, what) SPECONTEXT_ATTENTION_REQUIRE("prefill_attention", ok, what)

}  // namespace

void launch_prefill_attention(const PrefillAttentionParams& p, cudaStream_t stream) {
  PREFILL_REQUIRE(p.tokens >= 0, "tokens must be >= 0, got " + std::to_string(p.tokens));
  if (p.tokens == 0) return;
  check_attention_layout("prefill_attention", p);
  PREFILL_REQUIRE(p.positions != nullptr, "a tensor pointer is null");
  PREFILL_REQUIRE(aligned16(p.out), "q, k_cache, v_cache and out must be 16-byte aligned");
  PREFILL_REQUIRE(p.out_row_stride % 8 == 0, "out_row_stride must be a multiple of 8 and >= q_heads * head_dim");
  PREFILL_REQUIRE((p.tokens + kRows - 1) / kRows <= 65535, "tokens must be <= 65535 * 64, got " + std::to_string(p.tokens));

  const dim3 grid(p.q_heads, (p.tokens + kRows - 1) / kRows);
  switch (p.head_dim) {
    case 32: prefill_attention_kernel<32><<<grid, kThreads, 0, stream>>>(p); break;
    case 64: prefill_attention_kernel<64><<<grid, kThreads, 0, stream>>>(p); break;
    default: prefill_attention_kernel<128><<<grid, kThreads, 0, stream>>>(p); break;
  }
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
