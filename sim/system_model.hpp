#pragma once
// A decoding system as the simulator models it. Each system is its own class with its own
// step-graph builder (sim/systems/*.cpp); what they share is in StepIssuer and transformer_ops.
#include <memory>
#include <string>
#include <vector>

#include "sim/scenario.hpp"
#include "sim/step_graph.hpp"

namespace specontext {

struct MemoryUse {
  double gpu_bytes = 0;
  double host_bytes = 0;
  long long gpu_layers = 0;  // layers whose KV cache is in GPU memory
};

struct Feasibility {
  bool feasible = true;
  std::string reason;
};

class SystemModel {
 public:
  virtual ~SystemModel() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  // The most requests the system can decode together (Quest and ClusterKV: one).
  virtual long long max_requests(const Scenario&) const;
  // Memory in use while decoding at context length S (all requests).
  virtual MemoryUse memory_at(const Scenario& sc, long long S) const = 0;
  // Peak GPU bytes of the prefill (transients such as eager attention's score matrices).
  virtual double prefill_peak_gpu_bytes(const Scenario& sc) const;
  // Context lengths at which the step's structure changes (a layer moves to host memory);
  // the integrator never straddles them.
  virtual std::vector<long long> breakpoints(const Scenario&) const { return {}; }

  virtual void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const = 0;
  virtual void build_prefill(StepGraph& g, const Scenario& sc) const = 0;

  // Checks GPU and host memory at the prefill and at the longest context.
  Feasibility feasibility(const Scenario& sc) const;
};

std::unique_ptr<SystemModel> make_system(const std::string& name);
std::vector<std::string> system_names();

}  // namespace specontext
