#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "kernels/copy_rows.cuh"
#include "kernels/cuda_check.cuh"

namespace specontext::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) copy_rows_kernel(CopyRowsParams p) {
  const std::int64_t i = blockIdx.x;
  const std::int64_t s = p.src_rows ? p.src_rows[i] : i;
  const std::int64_t d = p.dst_rows ? p.dst_rows[i] : i;
  std::uint16_t* out = p.dst + d * p.dst_stride;
  if (p.src_f32) {
    const float* in = static_cast<const float*>(p.src) + s * p.src_stride;
    for (std::int64_t c = threadIdx.x; c < p.cols; c += kThreads) out[c] = __bfloat16_as_ushort(__float2bfloat16_rn(in[c]));
  } else {
    const std::uint16_t* in = static_cast<const std::uint16_t*>(p.src) + s * p.src_stride;
    for (std::int64_t c = threadIdx.x; c < p.cols; c += kThreads) out[c] = in[c];
  }
}

}  // namespace

void launch_copy_rows(const CopyRowsParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > 0x7fffffff) throw std::invalid_argument("copy_rows: rows out of range: " + std::to_string(p.rows));
  if (p.cols < 0) throw std::invalid_argument("copy_rows: negative cols");
  if (p.rows == 0 || p.cols == 0) return;
  if (p.src == nullptr || p.dst == nullptr) throw std::invalid_argument("copy_rows: null pointer");
  if (p.src_stride < p.cols || p.dst_stride < p.cols)
    throw std::invalid_argument("copy_rows: strides (" + std::to_string(p.src_stride) + ", " + std::to_string(p.dst_stride) +
                                ") shorter than a row of " + std::to_string(p.cols));
  copy_rows_kernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
