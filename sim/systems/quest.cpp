// Quest: KV on the GPU in 16-token pages with per-page min/max keys; in each layer (but the
// first two, which stay dense) the query scores every page's bounds, the top pages are
// read. Retrieval sits on each layer's critical path; one request at a time.
#include <cmath>

#include "sim/selection_ops.hpp"
#include "sim/step_issuer.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class Quest final : public SystemModel {
 public:
  std::string name() const override { return "quest"; }
  std::string description() const override { return "Quest: per-layer page retrieval (min/max keys), KV on GPU"; }
  long long max_requests(const Scenario& sc) const override { return static_cast<long long>(sc.param("max_requests")); }

  MemoryUse memory_at(const Scenario& sc, long long S) const override {
    MemoryUse u = dense_kv_memory(sc, S);
    const double pages = std::ceil(static_cast<double>(S) / sc.param("page_size"));
    // min and max key per page, per KV head and layer
    u.gpu_bytes += static_cast<double>(sc.workload.requests * sc.model.layers * sc.model.kv_heads * sc.model.head_dim) * pages * 2.0 * ops::kAct;
    return u;
  }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests);
    const double pages = std::ceil(static_cast<double>(sc.workload.input) / sc.param("page_size"));
    const double page_budget = std::ceil(static_cast<double>(sc.workload.budget) / sc.param("page_size"));
    const long long dense_layers = static_cast<long long>(sc.param("dense_layers"));
    issue_decode_step(is, sc, [](OpId x) { return x; }, [&](int l, OpId after) {
      if (l < dense_layers) return is.gpu(ops::decode_attention(m, l, R, static_cast<double>(S)), {after});
      OpId x = is.gpu(ops::candidate_scores("page_scores", m, l, R, pages, 2.0), {after});
      x = is.gpu(ops::topk_select("page_select", m, l, R, pages, page_budget), {x});
      return is.gpu(ops::sparse_attention(m, l, R, prompt_sparse_tokens(sc, S)), {x});
    });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    issue_prefill(
        is, sc,
        [&](int l, OpId after) {
          OpId x = is.gpu(ops::prefill_attention(m, l, R, S), {after});
          Op bounds;  // one pass over the layer's keys to build the page bounds
          bounds.name = "page_bounds";
          bounds.category = "retrieval";
          bounds.layer = l;
          bounds.hbm_bytes = R * S * static_cast<double>(m.kv_heads * m.head_dim) * ops::kAct * 1.25;
          bounds.launches = 1;
          return is.gpu(bounds, {x});
        },
        [](int, OpId) {});
  }
};

}  // namespace

std::unique_ptr<SystemModel> make_quest() { return std::make_unique<Quest>(); }

}  // namespace specontext
