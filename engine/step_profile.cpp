#include "engine/step_profile.hpp"

namespace specontext {

const char* to_string(StepPhase phase) {
  switch (phase) {
    case StepPhase::RetrievalHead: return "retrieval_head";
    case StepPhase::Select: return "select";
    case StepPhase::Prefetch: return "prefetch";
    case StepPhase::PrefetchWait: return "prefetch_wait";
    case StepPhase::Attention: return "attention";
    case StepPhase::Mlp: return "mlp";
    case StepPhase::Other: return "other";
    case StepPhase::Count: break;
  }
  return "?";
}

double StepProfile::total_ms() const {
  double t = 0;
  for (double v : ms) t += v;
  return t;
}

}  // namespace specontext
