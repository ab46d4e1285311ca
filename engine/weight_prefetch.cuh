#pragma once
// The decode step's L2 weight prefetch (kernels/l2_prefetch.cuh) on a stream of its own. ahead()
// forks from the compute stream at the point reached (the projection just issued), so the prefetch
// of the next projection's weights starts when that projection ends and runs beside the short
// kernels between the two (RoPE + KV append and attention before the O projection; an RMSNorm or
// SwiGLU before the others). join() makes the compute stream wait for every prefetch issued: a
// CUDA graph capture must end with its forked stream joined.
#include <cuda_runtime.h>

#include <cstddef>

namespace specontext {

class WeightPrefetch {
 public:
  // Each prefetch covers the first min(bytes, max_bytes) of its weights (0: none at all).
  explicit WeightPrefetch(std::size_t max_bytes);
  ~WeightPrefetch();
  WeightPrefetch(const WeightPrefetch&) = delete;
  WeightPrefetch& operator=(const WeightPrefetch&) = delete;

  void ahead(const void* weights, std::size_t bytes, cudaStream_t compute);
  void join(cudaStream_t compute);

 private:
  std::size_t max_bytes_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t fork_ = nullptr, done_ = nullptr;
  bool pending_ = false;
};

}  // namespace specontext
