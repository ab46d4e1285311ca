#pragma once
// A kernel that asks for more than 48 KB of dynamic shared memory must be allowed to, once per
// kernel and device (cudaFuncSetAttribute). Launchers sit on the decode critical path, so each keeps
// one SharedMemoryOptIn per kernel (a function-local static) and pays for the call only the first
// time on each device. cudaFuncSetAttribute is not a stream operation: it may run during graph
// capture.
#include <cuda_runtime.h>

#include <atomic>

#include "kernels/cuda_check.cuh"

namespace specontext::kernels {

class SharedMemoryOptIn {
 public:
  // Allows `kernel` up to `bytes` of dynamic shared memory on the current device and, with
  // max_shared_carveout, asks for the largest shared-memory carveout of the unified L1 (for kernels
  // whose global loads bypass L1, so that L1 is worth less to them than resident blocks).
  void allow(const void* kernel, int bytes, bool max_shared_carveout) {
    int dev = 0;
    SPECONTEXT_CUDA_CHECK(cudaGetDevice(&dev));
    const bool cache = dev >= 0 && dev < kCachedDevices;
    if (cache && done_[dev].load(std::memory_order_acquire)) return;
    SPECONTEXT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    if (max_shared_carveout)
      SPECONTEXT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    if (cache) done_[dev].store(true, std::memory_order_release);
  }

 private:
  static constexpr int kCachedDevices = 64;
  std::atomic<bool> done_[kCachedDevices] = {};
};

}  // namespace specontext::kernels
