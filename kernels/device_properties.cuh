#pragma once
// Host-side facts about the current device that launchers size their grids and choose their launch
// attributes by, read once per device (launches are on the decode critical path).
#include <cuda_runtime.h>

#include <atomic>

namespace specontext::kernels {

// The current device's attribute, cached per device, for attributes that are always positive (a 0
// reads as "not cached yet"). Where it cannot be read (no device: the launchers' parameter checks
// still run) `fallback` stands in and the error is cleared.
template <cudaDeviceAttr kAttribute>
int cached_device_attribute(int fallback) {
  constexpr int kCachedDevices = 64;
  static std::atomic<int> cached[kCachedDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return fallback;
  }
  if (dev >= 0 && dev < kCachedDevices) {
    const int n = cached[dev].load(std::memory_order_relaxed);
    if (n > 0) return n;
  }
  int n = 0;
  if (cudaDeviceGetAttribute(&n, kAttribute, dev) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    return fallback;
  }
  if (dev >= 0 && dev < kCachedDevices) cached[dev].store(n, std::memory_order_relaxed);
  return n;
}

// Only grids depend on it, so an H200's 132 stands in where it cannot be read.
inline int multiprocessors() { return cached_device_attribute<cudaDevAttrMultiProcessorCount>(132); }

// 0 where it cannot be read: features that need a recent device stay off.
inline int compute_capability_major() { return cached_device_attribute<cudaDevAttrComputeCapabilityMajor>(0); }

}  // namespace specontext::kernels
