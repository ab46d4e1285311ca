#pragma once
// Device memory owned by the engine's CUDA objects: one allocation per array, freed with its owner,
// and the bf16 upload of fp32 host weights.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "engine/safetensors.hpp"
#include "kernels/cuda_check.cuh"

namespace specontext {

using bf16_bits = std::uint16_t;

template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t count = 0;
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) : count(n) {
    if (n) SPECONTEXT_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T)));
  }
  DeviceArray(DeviceArray&& o) noexcept : ptr(o.ptr), count(o.count) { o.ptr = nullptr; o.count = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(count, o.count);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  void upload(const std::vector<T>& host) {
    if (host.size() != count) throw std::logic_error("DeviceArray::upload: size mismatch");
    SPECONTEXT_CUDA_CHECK(cudaMemcpy(ptr, host.data(), count * sizeof(T), cudaMemcpyHostToDevice));
  }
};

inline std::vector<bf16_bits> to_bf16(const std::vector<float>& v) {
  std::vector<bf16_bits> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline DeviceArray<bf16_bits> upload_bf16(const std::vector<float>& host) {
  DeviceArray<bf16_bits> d(host.size());
  d.upload(to_bf16(host));
  return d;
}

}  // namespace specontext
