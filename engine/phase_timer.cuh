#pragma once
// Per-step time of each phase of a decode step, from CUDA events on the compute stream (issue 5's
// metrics; DESIGN.md's NVTX names): lap(phase) attributes the time since the previous mark to
// `phase`, so a step is cut into consecutive intervals whose sum is the step. A phase that waits
// (the prefetch) is its own interval: the event after a cudaStreamWaitEvent completes only when the
// wait is over. Events cannot be timed inside a CUDA graph, so a profiled backend launches kernel by
// kernel; the intervals then include launch gaps, as the step does.
#include <cuda_runtime.h>

#include <vector>

#include "engine/step_profile.hpp"

namespace specontext {

class PhaseTimer {
 public:
  PhaseTimer() = default;
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  void begin(cudaStream_t stream);                // the step starts
  void lap(StepPhase phase, cudaStream_t stream);  // the interval since the last mark was `phase`
  // Waits for the step's events and adds its intervals to `into`.
  void end(StepProfile& into);

 private:
  cudaEvent_t event(std::size_t i);
  std::vector<cudaEvent_t> events_;
  std::vector<StepPhase> phases_;  // phase of the interval ending at marks 1..
  std::size_t marks_ = 0;
};

}  // namespace specontext
