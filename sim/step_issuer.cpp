#include "sim/step_issuer.hpp"

namespace specontext {

StepIssuer::StepIssuer(StepGraph& g, double host_per_layer_s, double host_per_step_s)
    : g_(g), host_per_layer_s_(host_per_layer_s), host_per_step_s_(host_per_step_s) {}

void StepIssuer::begin_region(int layer) {
  Op host;
  host.name = layer >= 0 ? "dispatch layer" : "dispatch";
  host.category = "host";
  host.resource = Resource::Host;
  host.layer = layer;
  host.host_seconds = host_per_layer_s_;
  dispatch_ = g_.add(host);
  have_dispatch_ = true;
}

OpId StepIssuer::gpu(Op op, std::vector<OpId> deps) {
  if (!have_dispatch_) begin_region(op.layer);
  // Each kernel costs the host a launch; account it on the region's dispatch op so that the
  // host thread's timeline stays one box per layer.
  g_.mutable_op(dispatch_).launches += op.launches;
  deps.push_back(dispatch_);
  op.resource = Resource::Gpu;
  return g_.add(std::move(op), deps);
}

OpId StepIssuer::finish(OpId last_gpu) {
  Op tokens;
  tokens.name = "tokens to host";
  tokens.category = "sync";
  tokens.resource = Resource::D2H;
  tokens.link_bytes = 64;  // a few token ids
  OpId copied = g_.add(tokens, {last_gpu});
  Op host;
  host.name = "step bookkeeping";
  host.category = "host";
  host.resource = Resource::Host;
  host.host_seconds = host_per_step_s_;
  return g_.add(host, {copied});
}

StepIssuer make_issuer(StepGraph& g, const Scenario& sc) {
  return StepIssuer(g, sc.param("host_overhead_per_layer_s"), sc.param("host_overhead_per_step_s"));
}

}  // namespace specontext
