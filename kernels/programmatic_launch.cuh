#pragma once
// Programmatic dependent launch (PDL, Hopper and newer): a kernel launched with it may be scheduled
// while the kernel before it on the stream is still finishing, so its launch, and whatever work of
// its own does not read the previous kernel's output, overlap that kernel's tail. A decode step at
// R = 1 is ~320 short kernels; each projection streams weights that no earlier kernel writes, so it
// can start pulling them into L2 before its input exists.
//
// The contract, kernel side:
//   * a kernel launched programmatically calls wait_for_previous_grid() before it reads anything an
//     earlier kernel wrote, and before it writes anything an earlier kernel may still read; every
//     thread that exits must have passed it (so that its grid's completion implies the previous
//     one's, and the chain stays ordered for the kernels after it);
//   * a kernel that precedes one may call allow_next_grid_to_start() (at its start): the next grid
//     is then scheduled once every block of this one has called it or exited, instead of at exit.
//     The next grid still waits in wait_for_previous_grid() for this one's completion and its
//     memory, so the call is always safe.
// Both compile to nothing below sm_90, and launches fall back to ordinary ones on such devices.
#include <cuda_runtime.h>

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

}  // namespace specontext::kernels
