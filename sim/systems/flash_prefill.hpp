#pragma once
// The prefill of systems that keep every layer's KV on the GPU and run a tiled (flash)
// attention: nothing happens to a layer's KV after it is written.
#include "sim/step_issuer.hpp"

namespace specontext {

inline void build_flash_prefill(StepGraph& g, const Scenario& sc) {
  StepIssuer is = make_issuer(g, sc);
  const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
  issue_prefill(
      is, sc, [&](int l, OpId after) { return is.gpu(ops::prefill_attention(sc.model, l, R, S), {after}); }, [](int, OpId) {});
}

}  // namespace specontext
