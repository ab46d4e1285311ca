#pragma once
// The phases of a decode step and their summed times (issue 5's per-step metrics; DESIGN.md's NVTX
// names), as engine/phase_timer.cuh measures them with CUDA events and `bench --breakdown` reports
// them. Plain data, so that CPU-only builds compile what reports it.
#include <array>
#include <cstddef>

namespace specontext {

enum class StepPhase { RetrievalHead, Select, Prefetch, PrefetchWait, Attention, Mlp, Other, Count };
const char* to_string(StepPhase phase);

struct StepProfile {
  std::array<double, static_cast<std::size_t>(StepPhase::Count)> ms{};  // summed over the steps
  int steps = 0;
  double total_ms() const;
};

}  // namespace specontext
