// FlashInfer dense serving: every layer's KV on the GPU (paged, appended in place), one
// fused decode-attention kernel reading K and V once per step.
#include "sim/step_issuer.hpp"
#include "sim/systems/flash_prefill.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class FlashInfer final : public SystemModel {
 public:
  std::string name() const override { return "flashinfer"; }
  std::string description() const override { return "dense attention, KV on GPU, FlashInfer kernels"; }

  MemoryUse memory_at(const Scenario& sc, long long S) const override { return dense_kv_memory(sc, S); }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const double R = static_cast<double>(sc.workload.requests);
    issue_decode_step(is, sc, [](OpId x) { return x; },
                      [&](int l, OpId after) { return is.gpu(ops::decode_attention(sc.model, l, R, static_cast<double>(S)), {after}); });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override { build_flash_prefill(g, sc); }

};

}  // namespace

std::unique_ptr<SystemModel> make_flashinfer() { return std::make_unique<FlashInfer>(); }

}  // namespace specontext
