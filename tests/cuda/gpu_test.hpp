#pragma once
// Shared by the GPU tests: skip cleanly without a device, device buffers, and the normalised
// error llama.cpp's test-backend-ops uses (mean squared error over the reference's mean square).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda_check.cuh"
#include "kernels/reference/bf16.hpp"

namespace specontext::testing {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SPECONTEXT_REQUIRE_GPU() \
  if (!::specontext::testing::have_gpu()) GTEST_SKIP() << "no CUDA device"

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t n) : n_(n) { SPECONTEXT_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T) + 1)); }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  void upload(const std::vector<T>& host) { SPECONTEXT_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    SPECONTEXT_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// n bf16 values drawn from N(mean, std), seeded.
inline std::vector<std::uint16_t> random_bf16(std::size_t n, std::uint32_t seed, float mean = 0.0f, float std = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(mean, std);
  std::vector<std::uint16_t> v(n);
  for (auto& x : v) x = ref::float_to_bf16(d(gen));
  return v;
}

inline std::vector<float> to_float(const std::vector<std::uint16_t>& bf16) {
  std::vector<float> out(bf16.size());
  for (std::size_t i = 0; i < bf16.size(); ++i) out[i] = ref::bf16_to_float(bf16[i]);
  return out;
}

// sum (got - want)^2 / sum want^2
inline double normalised_mse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return den > 0 ? num / den : num;
}

}  // namespace specontext::testing
