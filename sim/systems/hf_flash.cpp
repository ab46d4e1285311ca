// Hugging Face transformers with a fused attention kernel (FlashAttention-2 / SDPA):
// no score matrix, K and V read once, but DynamicCache still concatenates every step and
// the layers are dispatched from Python.
#include "sim/step_issuer.hpp"
#include "sim/systems/flash_prefill.hpp"
#include "sim/systems/hf_cache_ops.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class HfFlash final : public SystemModel {
 public:
  std::string name() const override { return "hf-flash"; }
  std::string description() const override { return "HF transformers, FlashAttention-2 / SDPA, KV on GPU"; }

  MemoryUse memory_at(const Scenario& sc, long long S) const override { return dense_kv_memory(sc, S); }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const double R = static_cast<double>(sc.workload.requests), s = static_cast<double>(S);
    const double eff = sc.param("attention_efficiency");
    issue_decode_step(is, sc, [](OpId x) { return x; }, [&](int l, OpId after) {
      OpId x = is.gpu(ops::hf_cache_cat(sc.model, l, R, s, eff), {after});
      Op attn = ops::decode_attention(sc.model, l, R, s);
      attn.efficiency = eff;
      return is.gpu(attn, {x});
    });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override { build_flash_prefill(g, sc); }

};

}  // namespace

std::unique_ptr<SystemModel> make_hf_flash() { return std::make_unique<HfFlash>(); }

}  // namespace specontext
