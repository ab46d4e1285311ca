#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "kernels/add_bias.cuh"
#include "kernels/cuda_check.cuh"

namespace specontext::kernels {
namespace {

// blockIdx.y walks tokens, x-threads walk columns.
__global__ void add_bias_kernel(AddBiasParams p) {
  for (std::int64_t t = blockIdx.y; t < p.tokens; t += gridDim.y) {
    std::uint16_t* row = p.x + t * p.row_stride;
    for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; c < p.cols;
         c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
      const float v = __bfloat162float(__ushort_as_bfloat16(row[c])) + __bfloat162float(__ushort_as_bfloat16(p.bias[c]));
      row[c] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
  }
}

}  // namespace

void launch_add_bias(const AddBiasParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.cols < 0) throw std::invalid_argument("launch_add_bias: negative tokens or cols");
  if (p.tokens == 0 || p.cols == 0) return;
  if (p.row_stride < p.cols) throw std::invalid_argument("launch_add_bias: row_stride " + std::to_string(p.row_stride) + " < cols");
  if (p.x == nullptr || p.bias == nullptr) throw std::invalid_argument("launch_add_bias: null pointer");
  const int threads = 256;
  const std::int64_t col_blocks = (p.cols + threads - 1) / threads;
  const dim3 grid(static_cast<unsigned>(col_blocks < 1024 ? col_blocks : 1024), static_cast<unsigned>(p.tokens < 65535 ? p.tokens : 65535));
  add_bias_kernel<<<grid, threads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
