#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/add_rmsnorm.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/programmatic_launch.cuh"

namespace specontext::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float bf(std::uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ std::uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
__device__ __forceinline__ float round_bf(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }

// The sum over the block, in every thread.
__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  return total;
}

// 8 bf16 in a uint4.
__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
  for (int k = 0; k < 4; ++k) {
    f[2 * k] = bf(static_cast<std::uint16_t>(w[k] & 0xffffu));
    f[2 * k + 1] = bf(static_cast<std::uint16_t>(w[k] >> 16));
  }
}
__device__ __forceinline__ uint4 pack8(const float* f) {
  std::uint32_t w[4];
  for (int k = 0; k < 4; ++k) w[k] = static_cast<std::uint32_t>(to_bf(f[2 * k])) | (static_cast<std::uint32_t>(to_bf(f[2 * k + 1])) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// 16-byte pieces of the norm's weight a thread loads before its wait (hidden <= 8 x 8 x 256 = 16384;
// any further pieces are loaded where they are used).
constexpr int kEarlyWeightPieces = 8;

template <bool kVec>
__global__ void __launch_bounds__(kThreads) add_rmsnorm_kernel(AddRmsNormParams p) {
  // The weight is a constant, so it may be read before the wait (kernels/programmatic_launch.cuh):
  // launched early, this block has it in registers when the previous kernel completes, and pass 2
  // does not wait on a memory round trip (most likely to HBM: the projections stream 15 GB of
  // weights a step through the 50 MB L2). On an H100 this took 0.3-0.8% off the step at R = 1-8
  // (bench/README, "add + RMSNorm loads its weight before the wait").
  const std::int64_t pieces = kVec ? p.hidden / 8 : 0;
  uint4 early_weight[kEarlyWeightPieces];
#pragma unroll
  for (int k = 0; k < kEarlyWeightPieces; ++k) {
    const std::int64_t i = threadIdx.x + static_cast<std::int64_t>(k) * kThreads;
    if (i < pieces) early_weight[k] = reinterpret_cast<const uint4*>(p.weight)[i];
  }
  wait_for_previous_grid();    // launched programmatically: the residual and delta come from the kernels before
  allow_next_grid_to_start();  // the projection after it may start streaming its weights
  const std::int64_t t = blockIdx.x;
  float* res = p.residual + t * p.hidden;
  const std::uint16_t* delta = p.delta ? p.delta + t * p.hidden : nullptr;
  std::uint16_t* out = p.out + t * (p.out_stride > 0 ? p.out_stride : p.hidden);

  // Pass 1: the add, written back, and the sum of squares. Pass 2 re-reads what this same
  // thread wrote (L1/L2), so the row never has to fit in registers.
  float sq = 0.0f;
  if (kVec) {
    for (std::int64_t i = threadIdx.x; i < pieces; i += kThreads) {
      float4* r4 = reinterpret_cast<float4*>(res + 8 * i);
      float4 a = r4[0], b = r4[1];
      if (delta) {
        float d[8];
        unpack8(reinterpret_cast<const uint4*>(delta)[i], d);
        a.x += d[0]; a.y += d[1]; a.z += d[2]; a.w += d[3];
        b.x += d[4]; b.y += d[5]; b.z += d[6]; b.w += d[7];
        r4[0] = a;
        r4[1] = b;
      }
      sq += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
    }
  } else {
    for (std::int64_t i = threadIdx.x; i < p.hidden; i += kThreads) {
      float r = res[i];
      if (delta) {
        r += bf(delta[i]);
        res[i] = r;
      }
      sq += r * r;
    }
  }
  const float mean = block_sum(sq) / static_cast<float>(p.hidden);
  const float inv = 1.0f / sqrtf(mean + p.eps);

  if (kVec) {
    auto normalise8 = [&](std::int64_t i, const uint4& weight8) {
      const float4* r4 = reinterpret_cast<const float4*>(res + 8 * i);
      const float4 a = r4[0], b = r4[1];
      const float r[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      float w[8], y[8];
      unpack8(weight8, w);
      for (int k = 0; k < 8; ++k) y[k] = w[k] * round_bf(r[k] * inv);
      reinterpret_cast<uint4*>(out)[i] = pack8(y);
    };
    // Unrolled, so early_weight stays in registers.
#pragma unroll
    for (int k = 0; k < kEarlyWeightPieces; ++k) {
      const std::int64_t i = threadIdx.x + static_cast<std::int64_t>(k) * kThreads;
      if (i < pieces) normalise8(i, early_weight[k]);
    }
    for (std::int64_t i = threadIdx.x + static_cast<std::int64_t>(kEarlyWeightPieces) * kThreads; i < pieces; i += kThreads)
      normalise8(i, reinterpret_cast<const uint4*>(p.weight)[i]);
  } else {
    for (std::int64_t i = threadIdx.x; i < p.hidden; i += kThreads) out[i] = to_bf(bf(p.weight[i]) * round_bf(res[i] * inv));
  }
}

bool aligned16(const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; }

}  // namespace

void launch_add_rmsnorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.tokens > 0x7fffffff) throw std::invalid_argument("launch_add_rmsnorm: tokens out of range: " + std::to_string(p.tokens));
  if (p.tokens == 0) return;
  if (p.hidden <= 0) throw std::invalid_argument("launch_add_rmsnorm: hidden must be positive, got " + std::to_string(p.hidden));
  if (p.residual == nullptr || p.weight == nullptr || p.out == nullptr) throw std::invalid_argument("launch_add_rmsnorm: null pointer");
  if (p.out_stride != 0 && p.out_stride < p.hidden)
    throw std::invalid_argument("launch_add_rmsnorm: out_stride " + std::to_string(p.out_stride) + " is shorter than a row");
  const bool vec = p.hidden % 8 == 0 && p.out_stride % 8 == 0 && aligned16(p.residual) && aligned16(p.weight) && aligned16(p.out) &&
                   (p.delta == nullptr || aligned16(p.delta));
  const unsigned blocks = static_cast<unsigned>(p.tokens);
  SPECONTEXT_CUDA_CHECK(launch_programmatic(vec ? add_rmsnorm_kernel<true> : add_rmsnorm_kernel<false>, dim3(blocks), dim3(kThreads), 0,
                                            stream, p));
}

}  // namespace specontext::kernels
