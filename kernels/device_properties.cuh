#pragma once
// Host-side facts about the current device that launchers size their grids by, read once per device
// (launches are on the decode critical path).
#include <cuda_runtime.h>

#include <atomic>

namespace specontext::kernels {

// The current device's multiprocessor count. Only grids depend on it, so where it cannot be read
// (no device: the launchers' parameter checks still run) an H200's 132 stands in and the error is
// cleared.
inline int multiprocessors() {
  constexpr int kCachedDevices = 64;
  constexpr int kFallback = 132;
  static std::atomic<int> cached[kCachedDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return kFallback;
  }
  if (dev >= 0 && dev < kCachedDevices) {
    const int n = cached[dev].load(std::memory_order_relaxed);
    if (n > 0) return n;
  }
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    return kFallback;
  }
  if (dev >= 0 && dev < kCachedDevices) cached[dev].store(n, std::memory_order_relaxed);
  return n;
}

}  // namespace specontext::kernels
