// ClusterKV: the prompt's keys are clustered per layer and KV head at prefill; the prompt's
// KV lives in host memory, with a GPU cache of recently used clusters. In each layer (but
// the first dense ones) the query scores the centroids, the selected clusters' misses are
// fetched synchronously, then attention runs. One request at a time.
#include <cmath>

#include "sim/selection_ops.hpp"
#include "sim/step_issuer.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class ClusterKv final : public SystemModel {
 public:
  std::string name() const override { return "clusterkv"; }
  std::string description() const override { return "ClusterKV: per-layer cluster retrieval, prompt KV offloaded, GPU cluster cache"; }
  long long max_requests(const Scenario& sc) const override { return static_cast<long long>(sc.param("max_requests")); }

  MemoryUse memory_at(const Scenario& sc, long long S) const override {
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), in = static_cast<double>(sc.workload.input);
    const double dense = sc.param("dense_layers"), sparse = static_cast<double>(m.layers) - dense;
    const double kv = ops::kv_bytes_per_token_layer(m);
    const double generated = std::max(0.0, static_cast<double>(S) - in);
    const double centroids = R * static_cast<double>(m.kv_heads * m.head_dim) * clusters(sc) * ops::kAct;
    const double cache = R * sc.param("gpu_cache_budgets") * static_cast<double>(sc.workload.budget) * kv;
    MemoryUse u;
    u.gpu_layers = static_cast<long long>(dense);
    u.gpu_bytes = kRuntimeFactor * m.weight_bytes() + R * static_cast<double>(S) * dense * kv + sparse * (R * generated * kv + centroids + cache);
    u.host_bytes = R * in * sparse * kv;
    return u;
  }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests);
    const double B = std::min<double>(static_cast<double>(sc.workload.budget), static_cast<double>(sc.workload.input));
    const double misses = std::ceil(B * (1.0 - sc.param("gpu_cache_hit_rate")));
    const long long dense_layers = static_cast<long long>(sc.param("dense_layers"));
    const double C = clusters(sc);
    const double host_kv = memory_at(sc, S).host_bytes;  // what the misses are fetched from
    issue_decode_step(is, sc, [](OpId x) { return x; }, [&](int l, OpId after) {
      if (l < dense_layers) return is.gpu(ops::decode_attention(m, l, R, static_cast<double>(S)), {after});
      OpId x = is.gpu(ops::candidate_scores("cluster_scores", m, l, R, C, 1.0), {after});
      x = is.gpu(ops::topk_select("cluster_select", m, l, R, C, B / sc.param("cluster_size")), {x});
      OpId fetched = g.add(ops::host_gather("fetch_misses", Resource::H2D, m, l, R, misses, ops::kv_row_bytes(m), host_kv), {x});
      return is.gpu(ops::sparse_attention(m, l, R, prompt_sparse_tokens(sc, S)), {x, fetched});
    });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    const long long dense_layers = static_cast<long long>(sc.param("dense_layers"));
    issue_prefill(
        is, sc, [&](int l, OpId after) { return is.gpu(ops::prefill_attention(m, l, R, S), {after}); },
        [&](int l, OpId layer_done) {
          if (l < dense_layers) return;
          Op kmeans;  // Lloyd iterations: every key against every centroid
          kmeans.name = "kmeans";
          kmeans.category = "retrieval";
          kmeans.layer = l;
          const double iters = sc.param("kmeans_iterations");
          kmeans.flops = iters * 2.0 * R * S * static_cast<double>(m.kv_heads * m.head_dim) * clusters(sc);
          kmeans.hbm_bytes = iters * R * S * static_cast<double>(m.kv_heads * m.head_dim) * ops::kAct;
          kmeans.launches = 2.0 * iters;
          OpId k = is.gpu(kmeans, {layer_done});
          Op out = ops::host_gather("offload_kv", Resource::D2H, m, l, R, S, ops::kv_row_bytes(m), 0.0);
          out.link_row_bytes = 0;
          g.add(out, {k});
        });
  }

 private:
  static double clusters(const Scenario& sc) {
    return std::ceil(static_cast<double>(sc.workload.input) / sc.param("cluster_size"));
  }
};

}  // namespace

std::unique_ptr<SystemModel> make_clusterkv() { return std::make_unique<ClusterKv>(); }

}  // namespace specontext
