#include <cuda_bf16.h>

#include "kernels/cuda_check.cuh"
#include "kernels/fill_random.cuh"
#include "kernels/random_hash.hpp"

namespace specontext::kernels {
namespace {

__global__ void fill_random_kernel(FillRandomParams p) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < p.count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const __nv_bfloat16 v = __float2bfloat16_rn(p.mean + p.stddev * rng::normal(p.seed, i));
    p.out[i] = __bfloat16_as_ushort(v);
  }
}

}  // namespace

void launch_fill_random(const FillRandomParams& p, cudaStream_t stream) {
  if (p.count <= 0) return;
  const int threads = 256;
  const std::int64_t wanted = (p.count + threads - 1) / threads;
  const int blocks = static_cast<int>(wanted < 132 * 32 ? wanted : 132 * 32);
  fill_random_kernel<<<blocks, threads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
