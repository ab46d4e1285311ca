#pragma once
// Reading device memory as fast as the HBM allows: the measured ceiling that `specontext bench
// --sweep` reports beside the datasheet's. A datasheet rate is a lead, not what a kernel can reach
// (../shared/H200.md: a streaming kernel reads ~4.5 of the H200's 4.8 TB/s), and the pool's
// machines differ, so a step's share of the ceiling measured in the same run says more than its
// share of the datasheet alone. Every word is read once with 16-byte loads, several in flight per
// thread, and folded into an XOR checksum: no read can be dropped as dead, and the CPU reference
// (kernels/reference/hbm_sweep.hpp) checks that every word was read.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace specontext::kernels {

struct HbmSweepParams {
  const std::uint64_t* words = nullptr;     // 16-byte aligned
  std::int64_t count = 0;                   // words to read
  unsigned long long* checksum = nullptr;  // the XOR of every word is folded into it (zero it first)
};

void launch_hbm_read_sweep(const HbmSweepParams& p, cudaStream_t stream);

// The milliseconds of each of `reps` sweeps (after one untimed) over a buffer of `bytes` (a multiple
// of 8) allocated for the purpose on the current device, timed with CUDA events; the caller takes
// their median. Choose `bytes` well above the L2 (the sweeps then read HBM, not cache): bench
// takes 4 GiB.
std::vector<double> hbm_read_sweep_ms(std::size_t bytes, int reps);

}  // namespace specontext::kernels
