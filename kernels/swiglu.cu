#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/programmatic_launch.cuh"
#include "kernels/swiglu.cuh"
#include "kernels/swiglu_math.cuh"

namespace specontext::kernels {
namespace {

// blockIdx.y walks tokens; x-threads walk groups of kVec columns.
template <int kVec>
__global__ void swiglu_kernel(SwigluParams p) {
  wait_for_previous_grid();    // launched programmatically: gate and up come from the projection before
  allow_next_grid_to_start();  // the down projection may start streaming its weights
  const std::int64_t groups = p.ffn / kVec;
  for (std::int64_t t = blockIdx.y; t < p.tokens; t += gridDim.y) {
    const std::uint16_t* gate = p.gate_up + t * p.in_stride;
    const std::uint16_t* up = gate + p.ffn;
    std::uint16_t* out = p.out + t * p.out_stride;
    for (std::int64_t j = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; j < groups;
         j += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
      if constexpr (kVec == 8) {
        const uint4 g4 = reinterpret_cast<const uint4*>(gate)[j], u4 = reinterpret_cast<const uint4*>(up)[j];
        const std::uint32_t g[4] = {g4.x, g4.y, g4.z, g4.w}, u[4] = {u4.x, u4.y, u4.z, u4.w};
        std::uint32_t o[4];
        for (int k = 0; k < 4; ++k) {
          const std::uint16_t lo = swiglu_bf16(static_cast<std::uint16_t>(g[k] & 0xffffu), static_cast<std::uint16_t>(u[k] & 0xffffu));
          const std::uint16_t hi = swiglu_bf16(static_cast<std::uint16_t>(g[k] >> 16), static_cast<std::uint16_t>(u[k] >> 16));
          o[k] = static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
        }
        reinterpret_cast<uint4*>(out)[j] = make_uint4(o[0], o[1], o[2], o[3]);
      } else {
        out[j] = swiglu_bf16(gate[j], up[j]);
      }
    }
  }
}

}  // namespace

void launch_swiglu(const SwigluParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.ffn < 0) throw std::invalid_argument("launch_swiglu: negative tokens or ffn");
  if (p.tokens == 0 || p.ffn == 0) return;
  if (p.in_stride < 2 * p.ffn || p.out_stride < p.ffn)
    throw std::invalid_argument("launch_swiglu: strides too small (in " + std::to_string(p.in_stride) + ", out " + std::to_string(p.out_stride) + ")");
  if (p.gate_up == nullptr || p.out == nullptr) throw std::invalid_argument("launch_swiglu: null pointer");
  const bool vec = p.ffn % 8 == 0 && p.in_stride % 8 == 0 && p.out_stride % 8 == 0 &&
                   reinterpret_cast<std::uintptr_t>(p.gate_up) % 16 == 0 && reinterpret_cast<std::uintptr_t>(p.out) % 16 == 0;
  const int threads = 256;
  const std::int64_t groups = vec ? p.ffn / 8 : p.ffn;
  const std::int64_t col_blocks = (groups + threads - 1) / threads;
  const dim3 grid(static_cast<unsigned>(col_blocks < 1024 ? col_blocks : 1024), static_cast<unsigned>(p.tokens < 65535 ? p.tokens : 65535));
  SPECONTEXT_CUDA_CHECK(launch_programmatic(vec ? swiglu_kernel<8> : swiglu_kernel<1>, grid, dim3(threads), 0, stream, p));
}

}  // namespace specontext::kernels
