#pragma once
// How a framework puts GPU work on the machine: a host thread dispatches each layer (Python
// and framework overhead plus one launch per kernel) and the GPU runs behind it, in order,
// on one compute stream. The step ends with the sampled tokens going back to the host
// (a synchronisation, as in every generate loop), followed by the per-step host work.
#include <vector>

#include "sim/scenario.hpp"
#include "sim/step_graph.hpp"

namespace specontext {

class StepIssuer {
 public:
  // host_per_layer_s: framework overhead to dispatch one layer; host_per_step_s: the rest
  // of the loop (sampling bookkeeping, stopping criteria) once per step.
  StepIssuer(StepGraph& g, double host_per_layer_s, double host_per_step_s);

  // Starts a dispatch region (one layer, or the step's head/tail) on the host thread.
  void begin_region(int layer);
  // Issues a GPU op of the current region after `deps`.
  OpId gpu(Op op, std::vector<OpId> deps = {});
  // Ends the step: sampled tokens D2H, then the per-step host work.
  OpId finish(OpId last_gpu);

  StepGraph& graph() { return g_; }
  OpId region_dispatch() const { return dispatch_; }

 private:
  StepGraph& g_;
  double host_per_layer_s_;
  double host_per_step_s_;
  OpId dispatch_ = 0;
  bool have_dispatch_ = false;
};

// Host parameters every system has in configs/systems.json.
StepIssuer make_issuer(StepGraph& g, const Scenario& sc);

}  // namespace specontext

namespace specontext {

// Issues one decoder layer: norm, QKV, RoPE + KV append, then `attention` (the system's own
// attention, issued after the given op; returns its last op), the output projection, the FFN.
template <class AttentionFn>
OpId issue_decoder_layer(StepIssuer& is, const ModelShape& m, int layer, double tokens, OpId prev, AttentionFn&& attention);

}  // namespace specontext

#include "sim/transformer_ops.hpp"

namespace specontext {

template <class AttentionFn>
OpId issue_decoder_layer(StepIssuer& is, const ModelShape& m, int layer, double tokens, OpId prev, AttentionFn&& attention) {
  is.begin_region(layer);
  OpId x = is.gpu(ops::attention_norm(m, layer, tokens), {prev});
  x = is.gpu(ops::qkv_projection(m, layer, tokens), {x});
  x = is.gpu(ops::rope_and_kv_append(m, layer, tokens), {x});
  x = attention(x);
  x = is.gpu(ops::output_projection(m, layer, tokens), {x});
  return is.gpu(ops::ffn(m, layer, tokens), {x});
}

}  // namespace specontext

namespace specontext {

// The skeleton of a decode step every system shares: embedding, `before_layers(after_embed)`
// (e.g. SpeContext's retrieval head and prefetch; returns the op the layers start after),
// the layers with `attention(layer, after_qkv)`, then LM head, sampling and the sync.
template <class BeforeLayers, class AttentionFn>
void issue_decode_step(StepIssuer& is, const Scenario& sc, BeforeLayers&& before_layers, AttentionFn&& attention) {
  const ModelShape& m = sc.model;
  const double R = static_cast<double>(sc.workload.requests);
  is.begin_region(-1);
  OpId x = is.gpu(ops::embedding(m, R));
  x = before_layers(x);
  for (int l = 0; l < m.layers; ++l)
    x = issue_decoder_layer(is, m, l, R, x, [&](OpId after) { return attention(l, after); });
  is.begin_region(-1);
  x = is.gpu(ops::lm_head(m, R), {x});
  x = is.gpu(ops::sampling(m, R), {x});
  is.finish(x);
}

// The prefill every system shares: the prompt of all requests through every layer with the
// system's `attention(layer, after_qkv)`, and `after_layer(layer, last_op)` for what the
// system does with a finished layer's KV (offload, compress). Ends with the first token.
template <class AttentionFn, class AfterLayerFn>
void issue_prefill(StepIssuer& is, const Scenario& sc, AttentionFn&& attention, AfterLayerFn&& after_layer) {
  const ModelShape& m = sc.model;
  const double R = static_cast<double>(sc.workload.requests);
  const double tokens = R * static_cast<double>(sc.workload.input);
  is.begin_region(-1);
  OpId x = is.gpu(ops::embedding(m, tokens));
  for (int l = 0; l < m.layers; ++l) {
    x = issue_decoder_layer(is, m, l, tokens, x, [&](OpId after) { return attention(l, after); });
    after_layer(l, x);
  }
  is.begin_region(-1);
  x = is.gpu(ops::lm_head(m, R), {x});  // logits of the last position only
  x = is.gpu(ops::sampling(m, R), {x});
  is.finish(x);
}

}  // namespace specontext
