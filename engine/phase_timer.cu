#include "engine/phase_timer.cuh"

#include "kernels/cuda_check.cuh"

namespace specontext {


PhaseTimer::~PhaseTimer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

cudaEvent_t PhaseTimer::event(std::size_t i) {
  while (events_.size() <= i) {
    cudaEvent_t e = nullptr;
    SPECONTEXT_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  return events_[i];
}

void PhaseTimer::begin(cudaStream_t stream) {
  marks_ = 0;
  phases_.clear();
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(event(marks_++), stream));
}

void PhaseTimer::lap(StepPhase phase, cudaStream_t stream) {
  if (marks_ == 0) return;  // not started
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(event(marks_++), stream));
  phases_.push_back(phase);
}

void PhaseTimer::end(StepProfile& into) {
  if (marks_ < 2) return;
  SPECONTEXT_CUDA_CHECK(cudaEventSynchronize(events_[marks_ - 1]));
  for (std::size_t i = 1; i < marks_; ++i) {
    float ms = 0;
    SPECONTEXT_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]));
    into.ms[static_cast<std::size_t>(phases_[i - 1])] += ms;
  }
  ++into.steps;
  marks_ = 0;
}

}  // namespace specontext
