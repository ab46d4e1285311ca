#include "kernels/hbm_sweep.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/device_properties.cuh"
#include "kernels/fill_random.cuh"

namespace specontext::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kBlocksPerSm = 4;  // 2,048 threads: a full SM
constexpr int kUnroll = 4;       // 16-byte loads in flight per thread: 128 KB an SM

__global__ void __launch_bounds__(kThreads)
    hbm_read_sweep_kernel(const ulonglong2* pieces, std::int64_t npieces, const std::uint64_t* tail, int ntail,
                          unsigned long long* checksum) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
  std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  unsigned long long x = 0;
  // All kUnroll loads are issued before any is used, so each thread keeps them in flight together.
  for (; i + (kUnroll - 1) * stride < npieces; i += kUnroll * stride) {
    ulonglong2 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(pieces + i + u * stride);  // read once: evict first
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x ^= v[u].x ^ v[u].y;
  }
  for (; i < npieces; i += stride) {
    const ulonglong2 v = __ldcs(pieces + i);
    x ^= v.x ^ v.y;
  }
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < ntail) x ^= tail[threadIdx.x];
  for (int off = 16; off > 0; off /= 2) x ^= __shfl_xor_sync(0xffffffffu, x, off);
  if (threadIdx.x % 32 == 0) atomicXor(checksum, x);
}

// The buffers and events of one measurement, released however it ends.
struct SweepResources {
  std::uint64_t* words = nullptr;
  unsigned long long* checksum = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  ~SweepResources() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (checksum) cudaFree(checksum);
    if (words) cudaFree(words);
  }
};

}  // namespace

void launch_hbm_read_sweep(const HbmSweepParams& p, cudaStream_t stream) {
  if (p.count < 0) throw std::invalid_argument("launch_hbm_read_sweep: negative count " + std::to_string(p.count));
  if (p.count == 0) return;
  if (p.words == nullptr || p.checksum == nullptr) throw std::invalid_argument("launch_hbm_read_sweep: null pointer");
  if (reinterpret_cast<std::uintptr_t>(p.words) % 16 != 0)
    throw std::invalid_argument("launch_hbm_read_sweep: words is not 16-byte aligned");
  const std::int64_t npieces = p.count / 2;
  const std::int64_t wanted = (npieces + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(wanted, static_cast<std::int64_t>(multiprocessors()) * kBlocksPerSm)));
  hbm_read_sweep_kernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const ulonglong2*>(p.words), npieces,
                                                        p.words + 2 * npieces, static_cast<int>(p.count % 2), p.checksum);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

std::vector<double> hbm_read_sweep_ms(std::size_t bytes, int reps) {
  if (bytes < 16 || bytes % 8 != 0)
    throw std::invalid_argument("hbm_read_sweep_ms: bytes must be a multiple of 8 and >= 16, got " + std::to_string(bytes));
  if (reps < 1) throw std::invalid_argument("hbm_read_sweep_ms: reps must be >= 1, got " + std::to_string(reps));
  const std::int64_t count = static_cast<std::int64_t>(bytes / 8);
  SweepResources r;
  SPECONTEXT_CUDA_CHECK(cudaMalloc(&r.words, static_cast<std::size_t>(count) * 8));
  SPECONTEXT_CUDA_CHECK(cudaMalloc(&r.checksum, sizeof(unsigned long long)));
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&r.start));
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&r.stop));
  // Written once, so that the reads are of memory the GPU has mapped and filled (values do not matter).
  launch_fill_random({reinterpret_cast<std::uint16_t*>(r.words), count * 4, 1, 0.0f, 1.0f}, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaMemset(r.checksum, 0, sizeof(unsigned long long)));
  const HbmSweepParams p{r.words, count, r.checksum};
  launch_hbm_read_sweep(p, nullptr);  // untimed: clocks up, first-touch costs paid
  std::vector<double> ms;
  for (int rep = 0; rep < reps; ++rep) {
    SPECONTEXT_CUDA_CHECK(cudaEventRecord(r.start, nullptr));
    launch_hbm_read_sweep(p, nullptr);
    SPECONTEXT_CUDA_CHECK(cudaEventRecord(r.stop, nullptr));
    SPECONTEXT_CUDA_CHECK(cudaEventSynchronize(r.stop));
    float t = 0;
    SPECONTEXT_CUDA_CHECK(cudaEventElapsedTime(&t, r.start, r.stop));
    ms.push_back(t);
  }
  return ms;
}

}  // namespace specontext::kernels
