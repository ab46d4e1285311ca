#pragma once
// Seeded random bf16 tensors made directly on the GPU (for --random-weights at the real shapes
// of 8B and 70B models, and random KV for benchmarks): value = mean + std * z, z ~ N(0, 1)
// from a counter-based hash of (seed, index), so the result does not depend on the launch.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct FillRandomParams {
  std::uint16_t* out = nullptr;  // bf16 bit patterns, `count` of them
  std::int64_t count = 0;
  std::uint64_t seed = 0;
  float mean = 0.0f;
  float stddev = 1.0f;
};

void launch_fill_random(const FillRandomParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
