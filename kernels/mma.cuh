#pragma once
// Warp-level tensor-core helpers shared by the attention kernels (prefill_attention,
// decode_attention): mma.sync m16n8k16 with bf16 inputs and fp32 accumulators, ldmatrix loads of
// 8x8 bf16 tiles from shared memory, and the packing of two floats into a bf16 pair.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), thread t of the warp,
// g = t / 4, c = 2 * (t % 4):
//   A (16 x 16, row-major): a[0] = A[g][c..c+1], a[1] = A[g+8][c..c+1], a[2] = A[g][c+8..c+9],
//                           a[3] = A[g+8][c+8..c+9]
//   B (16 x 8, "col"):      b0 = B[c..c+1][g], b1 = B[c+8..c+9][g]
//   C (16 x 8, fp32):       c[0..1] = C[g][c..c+1], c[2..3] = C[g+8][c..c+1]
// so the accumulators of two adjacent n-tiles are, packed to bf16, the A fragment of one k-step.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace specontext::kernels {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the attention kernels need bf16 mma.sync (sm_80 or newer)"
#endif

// c += A * B over one m16n8k16 step.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 tiles; lanes 8i .. 8i + 7 give the 16-byte rows of tile i, which lands in r[i] (thread t
// holds row t / 4, elements 2 (t % 4) and 2 (t % 4) + 1). A tile whose rows are keys of a [key][dim]
// array is thus a B fragment half of K^T.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// As ldmatrix_x4, each tile transposed (thread t holds rows 2 (t % 4) and 2 (t % 4) + 1 of column
// t / 4): tiles of a [key][dim] V array become B fragment halves of V, or A fragment quarters of V^T.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// (lo, hi) rounded to bf16, lo in the low half (the lower k index of a fragment pair).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

}  // namespace specontext::kernels
