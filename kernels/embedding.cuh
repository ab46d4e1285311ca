#pragma once
// Token embedding lookup: out[t, :] = table[ids[t], :]. Ids outside [0, vocab) give a zero row
// (the engine validates ids before; the kernel must not read out of bounds).
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct EmbeddingParams {
  std::uint16_t* out = nullptr;            // bf16 [tokens, hidden], rows contiguous
  const std::uint16_t* table = nullptr;    // bf16 [vocab, hidden], rows contiguous
  const std::int32_t* ids = nullptr;       // [tokens]
  std::int64_t tokens = 0;
  std::int64_t hidden = 0;
  std::int64_t vocab = 0;
};

void launch_embedding(const EmbeddingParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
