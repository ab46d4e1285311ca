#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/embedding.cuh"

namespace specontext::kernels {
namespace {

// One block per token; 16-byte copies (8 bf16) when the rows allow it.
template <bool kVec>
__global__ void embedding_kernel(EmbeddingParams p) {
  const std::int64_t t = blockIdx.x;
  const std::int32_t id = p.ids[t];
  const bool valid = id >= 0 && id < p.vocab;
  if (kVec) {
    uint4* dst = reinterpret_cast<uint4*>(p.out + t * p.hidden);
    const uint4* src = reinterpret_cast<const uint4*>(p.table + (valid ? id : 0) * p.hidden);
    const std::int64_t n = p.hidden / 8;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = valid ? src[i] : make_uint4(0, 0, 0, 0);
  } else {
    std::uint16_t* dst = p.out + t * p.hidden;
    const std::uint16_t* src = p.table + (valid ? id : 0) * p.hidden;
    for (std::int64_t i = threadIdx.x; i < p.hidden; i += blockDim.x) dst[i] = valid ? src[i] : std::uint16_t{0};
  }
}

}  // namespace

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.tokens > 0x7fffffff) throw std::invalid_argument("launch_embedding: tokens out of range: " + std::to_string(p.tokens));
  if (p.tokens == 0) return;
  if (p.hidden <= 0 || p.vocab <= 0) throw std::invalid_argument("launch_embedding: hidden and vocab must be positive");
  if (p.out == nullptr || p.table == nullptr || p.ids == nullptr) throw std::invalid_argument("launch_embedding: null pointer");
  const bool vec = p.hidden % 8 == 0 && reinterpret_cast<std::uintptr_t>(p.out) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(p.table) % 16 == 0;
  const unsigned blocks = static_cast<unsigned>(p.tokens);
  if (vec)
    embedding_kernel<true><<<blocks, 256, 0, stream>>>(p);
  else
    embedding_kernel<false><<<blocks, 256, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
