#include <algorithm>

#include "sim/systems/systems.hpp"
#include "sim/transformer_ops.hpp"

namespace specontext {

MemoryUse dense_kv_memory(const Scenario& sc, long long S) {
  MemoryUse u;
  u.gpu_layers = sc.model.layers;
  u.gpu_bytes = kRuntimeFactor * sc.model.weight_bytes() +
                static_cast<double>(sc.workload.requests) * static_cast<double>(S) * static_cast<double>(sc.model.layers) *
                    ops::kv_bytes_per_token_layer(sc.model);
  return u;
}

double prompt_sparse_tokens(const Scenario& sc, long long S) {
  const long long in = sc.workload.input;
  return static_cast<double>(std::min(sc.workload.budget, in) + std::max(0LL, S - in));
}

}  // namespace specontext
