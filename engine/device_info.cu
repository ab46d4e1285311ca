// query_devices() with the CUDA runtime: properties, and one tiny kernel per device to prove
// this binary carries code for its architecture (the usual failure when a binary built for
// sm_90 meets an A100 is cudaErrorNoKernelImageForDevice at the first launch).
#include <cuda_runtime.h>

#include "engine/device_info.hpp"

#ifndef SPECONTEXT_CUDA_ARCHITECTURES
#define SPECONTEXT_CUDA_ARCHITECTURES "?"
#endif

namespace specontext {
namespace {

__global__ void write_index_kernel(int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i * 3 + 1;
}

// Launches the test kernel; returns "" on success, else the reason.
std::string launch_check() {
  constexpr int n = 1024;
  int* d = nullptr;
  if (cudaError_t e = cudaMalloc(&d, n * sizeof(int)); e != cudaSuccess) return cudaGetErrorString(e);
  write_index_kernel<<<(n + 255) / 256, 256>>>(d, n);
  std::string error;
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    error = cudaGetErrorString(e);
  } else if (cudaError_t s = cudaDeviceSynchronize(); s != cudaSuccess) {
    error = cudaGetErrorString(s);
  } else {
    int host[n];
    if (cudaError_t c = cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost); c != cudaSuccess) error = cudaGetErrorString(c);
    for (int i = 0; i < n && error.empty(); ++i)
      if (host[i] != i * 3 + 1) error = "the test kernel wrote a wrong value";
  }
  cudaFree(d);
  return error;
}

}  // namespace

DeviceReport query_devices() {
  DeviceReport r;
  r.cuda_built = true;
  r.built_architectures = SPECONTEXT_CUDA_ARCHITECTURES;
  cudaDriverGetVersion(&r.driver_version);
  cudaRuntimeGetVersion(&r.runtime_version);
  r.driver_release = nvidia_driver_release();
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    r.error = r.driver_version == 0 ? "no CUDA driver on this machine" : cudaGetErrorString(e);
    return r;
  }
  for (int i = 0; i < count; ++i) {
    DeviceInfo d;
    d.index = i;
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    d.name = p.name;
    d.compute_major = p.major;
    d.compute_minor = p.minor;
    d.sm_count = p.multiProcessorCount;
    d.memory_bytes = static_cast<double>(p.totalGlobalMem);
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, i);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, i);
    d.peak_memory_bandwidth_Bps = 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
    cudaSetDevice(i);
    std::size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = static_cast<double>(free_b);
    d.kernel_error = launch_check();
    d.kernel_runs = d.kernel_error.empty();
    if (!d.kernel_runs && d.kernel_error.find("no kernel image") != std::string::npos)
      d.kernel_error += " (built for sm_" + r.built_architectures + ", the device is sm_" + std::to_string(p.major) +
                        std::to_string(p.minor) + ": rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(p.major) +
                        std::to_string(p.minor) + ")";
    r.devices.push_back(d);
  }
  return r;
}

}  // namespace specontext
