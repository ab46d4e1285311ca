#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/device_properties.cuh"
#include "kernels/l2_prefetch.cuh"

namespace specontext::kernels {
namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr int kThreads = 32;

__global__ void __launch_bounds__(kThreads) l2_prefetch_kernel(const unsigned char* base, std::size_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const std::size_t chunks = (bytes + kChunkBytes - 1) / kChunkBytes;
  for (std::size_t c = static_cast<std::size_t>(blockIdx.x) * kThreads + threadIdx.x; c < chunks;
       c += static_cast<std::size_t>(gridDim.x) * kThreads) {
    const std::size_t at = c * kChunkBytes;
    const auto size = static_cast<std::uint32_t>(bytes - at < kChunkBytes ? bytes - at : kChunkBytes);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(base + at), "r"(size) : "memory");
  }
#endif
}

}  // namespace

void launch_l2_prefetch(const void* ptr, std::size_t bytes, cudaStream_t stream) {
  bytes -= bytes % 16;
  if (bytes == 0) return;
  if (ptr == nullptr) throw std::invalid_argument("launch_l2_prefetch: field 'ptr' is null");
  if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) throw std::invalid_argument("launch_l2_prefetch: field 'ptr' is not 16-byte aligned");
  if (compute_capability_major() < 9) return;  // the bulk prefetch is sm_90's
  // One block per SM at most: every SM's bulk-copy unit takes a share of the chunks.
  const std::size_t chunks = (bytes + kChunkBytes - 1) / kChunkBytes;
  const std::size_t wanted = (chunks + kThreads - 1) / kThreads;
  const std::size_t sms = static_cast<std::size_t>(multiprocessors());
  const unsigned blocks = static_cast<unsigned>(wanted < sms ? wanted : sms);
  l2_prefetch_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const unsigned char*>(ptr), bytes);
  SPECONTEXT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace specontext::kernels
