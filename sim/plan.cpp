#include "sim/plan.hpp"

#include <algorithm>

namespace specontext {

Plan make_plan(const Scenario& sc) {
  const MemoryModel mm = sc.memory_model();
  Plan p;
  p.inputs = mm.inputs();
  p.thresholds = mm.thresholds();
  p.max_length = std::max(0LL, p.thresholds.back());
  // Alg. 1 gives L_CPU(S) = the first i with S < S_i^T; walk the lengths where it changes.
  long long S = 0;
  while (S < p.max_length) {
    const long long cpu = mm.cpu_layers_at(S);
    long long end = p.max_length;
    for (long long i = cpu; i <= p.inputs.layers; ++i) {
      const long long t = p.thresholds[static_cast<std::size_t>(i)];
      if (t > S) {
        end = std::min(end, t);
        break;
      }
    }
    p.segments.push_back({S, end, p.inputs.layers - cpu, cpu});
    S = end;
  }
  return p;
}

nlohmann::json to_json(const Plan& p, const Scenario& sc) {
  const MemoryModel mm = sc.memory_model();
  nlohmann::json segs = nlohmann::json::array();
  for (const auto& s : p.segments) segs.push_back({{"from", s.from}, {"to", s.to}, {"gpu_layers", s.gpu_layers}, {"cpu_layers", s.cpu_layers}});
  return {{"model", sc.model.name},
          {"hardware", sc.hw.name},
          {"requests", p.inputs.requests},
          {"budget", p.inputs.budget},
          {"layers", p.inputs.layers},
          {"alpha", p.inputs.alpha},
          {"gpu_memory_bytes", p.inputs.gpu_memory_bytes},
          {"draft_part", to_string(sc.draft_part)},
          {"buffer_term", to_string(p.inputs.buffer_term)},
          {"thresholds", p.thresholds},
          {"max_length", p.max_length},
          {"layers_on_gpu_at", segs},
          {"bytes",
           {{"model", p.inputs.model_bytes},
            {"draft", p.inputs.draft_bytes},
            {"weights_and_runtime", mm.weights_and_runtime()},
            {"kv_per_token_per_layer_all_requests", mm.kv_unit()},
            {"kv_per_token_all_gpu", mm.kv_unit() * (static_cast<double>(p.inputs.layers) + 1 + p.inputs.alpha)},
            {"buffer_per_offloaded_layer", mm.buffer_per_offloaded_layer()}}}};
}

}  // namespace specontext
