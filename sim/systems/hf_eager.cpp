// Hugging Face transformers, eager attention: DynamicCache concatenation, repeat_kv, the
// score matrix materialised and soft-maxed in fp32, all dispatched op by op from Python.
#include "sim/step_issuer.hpp"
#include "sim/systems/hf_cache_ops.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class HfEager final : public SystemModel {
 public:
  std::string name() const override { return "hf-eager"; }
  std::string description() const override { return "HF transformers, eager attention, KV on GPU"; }

  MemoryUse memory_at(const Scenario& sc, long long S) const override {
    MemoryUse u = dense_kv_memory(sc, S);
    // One layer's repeated K and V live at once while its attention runs.
    u.gpu_bytes += static_cast<double>(sc.workload.requests) * static_cast<double>(S) * ops::kv_bytes_per_token_layer(sc.model) * sc.model.group_size();
    return u;
  }

  double prefill_peak_gpu_bytes(const Scenario& sc) const override {
    // One layer's scores: bf16 scores, their fp32 softmax and the bf16 cast back, plus the
    // 4-D causal mask (bf16), for every request and query head.
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    const double scores = R * static_cast<double>(sc.model.q_heads) * S * S * (2.0 + 4.0 + 2.0) + R * S * S * 2.0;
    return memory_at(sc, sc.workload.input).gpu_bytes + scores;
  }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const double R = static_cast<double>(sc.workload.requests), s = static_cast<double>(S);
    const double eff = sc.param("attention_efficiency");
    const ModelShape& m = sc.model;
    issue_decode_step(is, sc, [](OpId x) { return x; }, [&](int l, OpId after) {
      OpId x = is.gpu(ops::hf_cache_cat(m, l, R, s, eff), {after});
      if (m.group_size() > 1) x = is.gpu(ops::hf_repeat_kv(m, l, R, s, eff), {x});
      return is.gpu(eager_attention(m, l, R, 1.0, s, eff), {x});
    });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override {
    StepIssuer is = make_issuer(g, sc);
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    const double eff = sc.param("attention_efficiency");
    issue_prefill(is, sc, [&](int l, OpId after) { return is.gpu(eager_attention(sc.model, l, R, S, S, eff), {after}); }, [](int, OpId) {});
  }

 private:
  // queries x keys scores per head (the full matrix, masked, even when causal), softmax in
  // fp32 and the weighted sum over repeated V.
  static Op eager_attention(const ModelShape& m, int layer, double R, double queries, double keys, double eff) {
    Op op;
    op.name = "eager_attention";
    op.category = "attention";
    op.layer = layer;
    const double nq = static_cast<double>(m.q_heads), d = static_cast<double>(m.head_dim);
    const double scores = R * nq * queries * keys;
    op.flops = 4.0 * scores * d + 5.0 * scores;
    // reads Q, repeated K and V (per query head), writes and re-reads the scores in bf16 and fp32
    op.hbm_bytes = R * nq * (2.0 * keys + 2.0 * queries) * d * ops::kAct + scores * (2.0 + 2.0 + 4.0 + 4.0 + 2.0 + 2.0);
    op.launches = 6;  // matmul, scale+mask, softmax, cast, matmul, transpose
    op.efficiency = eff;
    return op;
  }
};

}  // namespace

std::unique_ptr<SystemModel> make_hf_eager() { return std::make_unique<HfEager>(); }

}  // namespace specontext
