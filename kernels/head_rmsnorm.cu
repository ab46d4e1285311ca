#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/head_rmsnorm.cuh"

namespace specontext::kernels {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPerLane = 8;  // head_dim <= 256

__device__ __forceinline__ float bf(std::uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ std::uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__global__ void head_rmsnorm_kernel(HeadRmsNormParams p) {
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (item >= p.tokens * p.heads) return;
  const int lane = threadIdx.x & 31;
  const std::int64_t t = item / p.heads, h = item % p.heads;
  std::uint16_t* v = p.x + t * p.row_stride + h * p.head_dim;
  const int d = static_cast<int>(p.head_dim);

  float x[kMaxPerLane];
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    const int i = lane + 32 * k;
    x[k] = i < d ? bf(v[i]) : 0.0f;
    sq += x[k] * x[k];
  }
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  const float inv = 1.0f / sqrtf(sq / static_cast<float>(d) + p.eps);
#pragma unroll
  for (int k = 0; k < kMaxPerLane; ++k) {
    const int i = lane + 32 * k;
    if (i < d) v[i] = to_bf(bf(p.weight[i]) * __bfloat162float(__float2bfloat16_rn(x[k] * inv)));
  }
}

}  // namespace

void launch_head_rmsnorm(const HeadRmsNormParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.heads < 0) throw std::invalid_argument("launch_head_rmsnorm: negative tokens or heads");
  if (p.tokens == 0 || p.heads == 0) return;
  if (p.head_dim <= 0 || p.head_dim > 32 * kMaxPerLane)
    throw std::invalid_argument("launch_head_rmsnorm: head_dim must be in 1..256, got " + std::to_string(p.head_dim));
  if (p.row_stride < p.heads * p.head_dim) throw std::invalid_argument("launch_head_rmsnorm: row_stride < heads * head_dim");
  if (p.x == nullptr || p.weight == nullptr) throw std::invalid_argument("launch_head_rmsnorm: null pointer");
  const std::int64_t blocks = (p.tokens * p.heads + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) throw std::invalid_argument("launch_head_rmsnorm: too many heads");
  head_rmsnorm_kernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
