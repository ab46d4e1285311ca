#pragma once
// Programmatic dependent launch (PDL, Hopper and newer): a kernel launched with it may be scheduled
// while the kernel before it on the stream is still finishing, so its launch, and whatever work of
// its own does not read the previous kernel's output, overlap that kernel's tail. A decode step at
// R = 1 is ~320 short kernels, each a few microseconds: the gap between two dependent launches is a
// real share of the step. Each projection also streams weights that no earlier kernel writes, so it
// can start loading them before its input exists.
//
// The contract, kernel side:
//   * a kernel launched programmatically calls wait_for_previous_grid() before it reads anything any
//     earlier kernel wrote (not only the previous one: that one may itself still be waiting), and
//     before it writes anything an earlier kernel may still read; every thread that exits must have
//     passed it (so that its grid's completion implies the previous one's, and the chain stays ordered
//     for the kernels after it). Before the wait it may only read constants (weights, tables), or
//     data its caller vouches was complete before the previous kernel was enqueued, where that
//     kernel releases the next one only after its own wait, as the decode chain's do (decode
//     attention's history_ready: slots, lengths and the older cache rows);
//   * a kernel that precedes one may call allow_next_grid_to_start(): the next grid is then scheduled
//     once every block of this one has called it or exited, instead of at exit. The next grid still
//     waits in wait_for_previous_grid() for this one's completion and its memory, so the call is
//     always safe. The decode chain's kernels (add + RMSNorm, the small-batch projections, RoPE + KV
//     append, decode attention's split and merge, SwiGLU) call it right after their own wait, so the
//     next kernel's blocks are placed while this one runs, but no further ahead than that.
// Both compile to nothing below sm_90, and launches fall back to ordinary ones on such devices.
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace specontext::kernels {

__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_grid_to_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// On by default; `specontext bench --no-pdl` turns it off process-wide, to measure what it buys.
void set_programmatic_launch(bool on);

// The launch attribute for `kernel` on the current device: programmatic stream serialisation where
// it is on, the device is sm_90 or newer and the kernel's binary was built for sm_90 or newer (so its
// wait_for_previous_grid() is compiled in; an sm_80 build run on an H100 must not be launched early)
// (count 1), else none (count 0). Works inside stream capture: the graph keeps the programmatic edge.
struct ProgrammaticLaunch {
  cudaLaunchAttribute attribute{};
  unsigned count = 0;
};
ProgrammaticLaunch programmatic_launch(const void* kernel);

// kernel<<<grid, block, shared_bytes, stream>>>(args...) with programmatic_launch(kernel)'s attribute.
// The kernel must keep the contract above.
template <class... Params, class... Args>
cudaError_t launch_programmatic(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
                                Args&&... args) {
  ProgrammaticLaunch pdl = programmatic_launch(reinterpret_cast<const void*>(kernel));
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &pdl.attribute;
  config.numAttrs = pdl.count;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace specontext::kernels
