// ShadowKV: at prefill the prompt's pre-RoPE keys are stored on the GPU as a low-rank
// factorisation, the values go to host memory, and each 8-token chunk keeps a landmark
// (mean key). In each layer the query scores the landmarks, the selected chunks' values
// are fetched over the host link while their keys are rebuilt from the low-rank factors,
// then attention runs over them, the outlier chunks and the tokens generated since.
#include <algorithm>
#include <cmath>

#include "sim/selection_ops.hpp"
#include "sim/step_issuer.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class ShadowKv final : public SystemModel {
 public:
  std::string name() const override { return "shadowkv"; }
  std::string description() const override { return "ShadowKV: low-rank keys on GPU, values on host, chunk selection, overlapped"; }

  MemoryUse memory_at(const Scenario& sc, long long S) const override {
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), in = static_cast<double>(sc.workload.input);
    const double L = static_cast<double>(m.layers), kv = ops::kv_bytes_per_token_layer(m);
    const double kvd = static_cast<double>(m.kv_heads * m.head_dim), rank = sc.param("rank");
    const double generated = std::max(0.0, static_cast<double>(S) - in);
    const double per_layer = R * in * rank * ops::kAct                                   // low-rank A
                             + rank * kvd * ops::kAct * R                                // B factor per request
                             + R * (in / sc.param("chunk_size")) * kvd * ops::kAct      // landmarks
                             + R * (sc.param("outlier_tokens") + generated) * kv;       // whole tokens
    const double buffers = R * static_cast<double>(sc.workload.budget) * kv;  // one layer's rebuilt K and fetched V
    MemoryUse u;
    u.gpu_layers = 0;
    u.gpu_bytes = kRuntimeFactor * m.weight_bytes() + L * per_layer + buffers;
    u.host_bytes = R * in * L * kv / 2.0;  // values only
    return u;
  }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests);
    const double in = static_cast<double>(sc.workload.input);
    const double chunk = sc.param("chunk_size");
    const double B = std::min<double>(static_cast<double>(sc.workload.budget), in);
    const double chunks = std::ceil(in / chunk);
    const double kvd = static_cast<double>(m.kv_heads * m.head_dim), d = static_cast<double>(m.head_dim);
    const double rank = sc.param("rank");
    const double v_row = chunk * d * ops::kAct;  // a chunk's values for one head are contiguous
    const double host_values = memory_at(sc, S).host_bytes;
    issue_decode_step(is, sc, [](OpId x) { return x; }, [&](int l, OpId after) {
      OpId x = is.gpu(ops::candidate_scores("landmark_scores", m, l, R, chunks, 1.0), {after});
      x = is.gpu(ops::topk_select("chunk_select", m, l, R, chunks, B / chunk), {x});
      OpId v = g.add(ops::host_gather("fetch_values", Resource::H2D, m, l, R, B / chunk, v_row, host_values), {x});
      Op rebuild;
      rebuild.name = "rebuild_keys";
      rebuild.category = "retrieval";
      rebuild.layer = l;
      rebuild.flops = 2.0 * R * B * rank * kvd;
      rebuild.hbm_bytes = R * B * rank * ops::kAct + R * rank * kvd * ops::kAct + R * B * kvd * ops::kAct;
      rebuild.launches = 2;  // gather-GEMM, RoPE
      OpId k = is.gpu(rebuild, {x});
      const double tokens = B + sc.param("outlier_tokens") + std::max(0.0, static_cast<double>(S) - in);
      return is.gpu(ops::sparse_attention(m, l, R, tokens), {k, v});
    });
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    const double kvd = static_cast<double>(m.kv_heads * m.head_dim), rank = sc.param("rank");
    issue_prefill(
        is, sc, [&](int l, OpId after) { return is.gpu(ops::prefill_attention(m, l, R, S), {after}); },
        [&](int l, OpId layer_done) {
          Op svd;  // randomised SVD of the layer's S x (H*D) pre-RoPE keys
          svd.name = "low_rank_keys";
          svd.category = "retrieval";
          svd.layer = l;
          svd.flops = 4.0 * R * S * kvd * rank;
          svd.hbm_bytes = 3.0 * R * S * kvd * ops::kAct;
          svd.launches = 6;
          OpId k = is.gpu(svd, {layer_done});
          Op out = ops::host_gather("offload_values", Resource::D2H, m, l, R, S, static_cast<double>(m.head_dim) * ops::kAct, 0.0);
          out.link_row_bytes = 0;
          g.add(out, {k});
        });
  }
};

}  // namespace

std::unique_ptr<SystemModel> make_shadowkv() { return std::make_unique<ShadowKv>(); }

}  // namespace specontext
