#include "engine/weight_prefetch.cuh"

#include <algorithm>

#include "kernels/cuda_check.cuh"
#include "kernels/l2_prefetch.cuh"

namespace specontext {

WeightPrefetch::WeightPrefetch(std::size_t max_bytes) : max_bytes_(max_bytes) {
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  SPECONTEXT_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
  SPECONTEXT_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

WeightPrefetch::~WeightPrefetch() {
  if (done_) cudaEventDestroy(done_);
  if (fork_) cudaEventDestroy(fork_);
  if (stream_) cudaStreamDestroy(stream_);
}

void WeightPrefetch::ahead(const void* weights, std::size_t bytes, cudaStream_t compute) {
  bytes = std::min(bytes, max_bytes_);
  if (bytes == 0 || weights == nullptr) return;
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(fork_, compute));
  SPECONTEXT_CUDA_CHECK(cudaStreamWaitEvent(stream_, fork_, 0));
  kernels::launch_l2_prefetch(weights, bytes, stream_);
  pending_ = true;
}

void WeightPrefetch::join(cudaStream_t compute) {
  if (!pending_) return;
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(done_, stream_));
  SPECONTEXT_CUDA_CHECK(cudaStreamWaitEvent(compute, done_, 0));
  pending_ = false;
}

}  // namespace specontext
