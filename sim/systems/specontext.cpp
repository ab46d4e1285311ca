// SpeContext (PAPER.md §1, §3, §4): a retrieval head built from the EAGLE-3 draft selects
// B tokens per KV head once per step, before the LLM forward; every layer attends over
// them. c2: the host-resident layers' selections move on the copy engine while the GPU
// computes, and only S_now - S_last (1 - overlap of B) moves. c3: layers move to host
// memory one by one, last first, as S crosses the memory model's thresholds.
//
// Two optional system parameters describe an implementation's loading (configs/systems.json's
// entry leaves them out: the paper's system; sim/calibration.cpp sets them for our engine):
//   prefetch_group_layers  offloaded layers moved by one gather (default 1). With one position of
//                          every offloaded layer contiguous in host memory (the engine's layout), a
//                          group of g layers moves rows of g layers' K|V (g x 512 B at head_dim 128),
//                          which the link moves faster than one layer's.
//   elastic_sync_loads     1: without c2 the synchronous loads still move only the changed rows (the
//                          engine's c1); 0 (default): all B rows (the paper's c1).
#include <algorithm>
#include <cmath>

#include "sim/selection_ops.hpp"
#include "sim/step_issuer.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {
namespace {

class SpeContext final : public SystemModel {
 public:
  std::string name() const override { return "specontext"; }
  std::string description() const override { return "SpeContext: retrieval head, elastic prefetch, adaptive placement"; }

  // Layers whose KV is in host memory at length S. Without c3 the placement is fixed before
  // inference, as the paper's prior systems do: all on the GPU if the whole generation fits
  // (Eq. 6), otherwise every layer offloaded.
  long long cpu_layers(const Scenario& sc, long long S) const {
    if (sc.offloaded_layers) return *sc.offloaded_layers;
    const MemoryModel mm = sc.memory_model();
    if (sc.components.c3) return mm.cpu_layers_at(S);
    return mm.all_on_gpu(sc.final_length()) <= sc.gpu_memory_bytes ? 0 : sc.model.layers;
  }

  MemoryUse memory_at(const Scenario& sc, long long S) const override {
    const MemoryModel mm = sc.memory_model();
    const long long gpu_layers = sc.model.layers - cpu_layers(sc, S);
    const MemoryBreakdown b = mm.breakdown(S, gpu_layers);
    return {b.total_gpu(), b.kv_host, gpu_layers};
  }

  std::vector<long long> breakpoints(const Scenario& sc) const override {
    if (!sc.components.c3) return {};
    return sc.memory_model().thresholds();
  }

  void build_decode_step(StepGraph& g, const Scenario& sc, long long S) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), s = static_cast<double>(S);
    const double B = std::min<double>(static_cast<double>(sc.workload.budget), s);
    const long long first_cpu_layer = m.layers - cpu_layers(sc, S);
    const double row = ops::kv_row_bytes(m);
    // Rows that change between adjacent steps' selections (PAPER.md §3.3).
    const double changed_rows = std::ceil((1.0 - sc.overlap) * B);
    const long long group = std::max(1LL, static_cast<long long>(optional_param(sc, "prefetch_group_layers", 1)));
    const bool elastic_sync = optional_param(sc, "elastic_sync_loads", 0) != 0;
    const bool offloading = first_cpu_layer < m.layers;
    const double host_kv = memory_at(sc, S).host_bytes;  // what the elastic loads read from
    std::vector<OpId> prefetched(static_cast<std::size_t>(m.layers), 0);

    auto before_layers = [&](OpId x) {
      x = is.gpu(retrieval_projection(sc, R), {x});
      x = is.gpu(ops::candidate_scores("retrieval_scores", sc.draft, -1, R, s, 1.0), {x});
      x = is.gpu(ops::topk_select("select", sc.draft, -1, R, s, B), {x});
      if (!offloading || !(sc.components.c2 || elastic_sync)) return x;
      // Set differences S_now - S_last and S_last - S_now per (request, KV head), on the GPU.
      Op diff;
      diff.name = "elastic_diff";
      diff.category = "select";
      diff.hbm_bytes = R * static_cast<double>(m.kv_heads) * B * 4.0 * 3.0;
      diff.launches = 1;
      x = is.gpu(diff, {x});
      if (!sc.components.c2) return x;
      // Host slot s holds layer L-1-s (the last layer first); groups of slots s / group are gathered in
      // the order the forward reaches them, and a layer waits for its group.
      const long long cpu = m.layers - first_cpu_layer;
      for (long long gi = (cpu + group - 1) / group - 1; gi >= 0; --gi) {
        const long long slot_begin = gi * group, slot_end = std::min(cpu, slot_begin + group);
        const OpId copy = g.add(ops::host_gather("prefetch", Resource::H2D, m, static_cast<int>(m.layers - slot_end), R, changed_rows,
                                                 row * static_cast<double>(slot_end - slot_begin), host_kv),
                                {x});
        for (long long s = slot_begin; s < slot_end; ++s) prefetched[static_cast<std::size_t>(m.layers - 1 - s)] = copy;
        // The gather runs beside the forward and slows it (Hardware::gather_gpu_slowdown).
        Op contention;
        contention.name = "prefetch_contention";
        contention.category = "prefetch";
        contention.concurrent_gather_bytes = g.op(copy).link_bytes;
        contention.link_row_bytes = g.op(copy).link_row_bytes;
        contention.link_footprint_bytes = host_kv;
        x = is.gpu(contention, {x});
      }
      return x;
    };

    auto attention = [&](int l, OpId after) {
      const bool offloaded = l >= first_cpu_layer;
      std::vector<OpId> deps = {after};
      if (offloaded) {
        if (sc.components.c2) {
          deps.push_back(prefetched[static_cast<std::size_t>(l)]);
        } else {  // c1 alone: loaded synchronously before the layer's attention, one layer at a time
          deps.push_back(g.add(ops::host_gather("load", Resource::H2D, m, l, R, elastic_sync ? changed_rows : B, row, host_kv), {after}));
        }
        // The new token's K and V go to the layer's host copy as well.
        g.add(ops::host_gather("kv_to_host", Resource::D2H, m, l, R, 1.0, row, 0.0), {after});
      }
      return is.gpu(ops::sparse_attention(m, l, R, B), deps);
    };
    issue_decode_step(is, sc, before_layers, attention);
  }

  void build_prefill(StepGraph& g, const Scenario& sc) const override {
    StepIssuer is = make_issuer(g, sc);
    const ModelShape& m = sc.model;
    const double R = static_cast<double>(sc.workload.requests), S = static_cast<double>(sc.workload.input);
    const long long first_cpu_layer = m.layers - cpu_layers(sc, sc.workload.input);
    issue_prefill(
        is, sc, [&](int l, OpId after) { return is.gpu(ops::prefill_attention(m, l, R, S), {after}); },
        [&](int l, OpId layer_done) {
          // The head fills its K cache from the prompt once the highest of the three target
          // layers it reads features from is done.
          if (l == m.layers - 1) is.gpu(retrieval_projection(sc, R * S), {layer_done});
          if (l >= first_cpu_layer) {
            Op out = ops::host_gather("offload_kv", Resource::D2H, m, l, R, S, ops::kv_row_bytes(m), 0.0);
            out.link_row_bytes = 0;  // whole layers move as one contiguous copy
            g.add(out, {layer_done});
          }
        });
  }

 private:
  static double optional_param(const Scenario& sc, const char* key, double fallback) {
    return sc.system_params.contains(key) ? sc.param(key) : fallback;
  }

  // The pruned head's projections: fc over three target features, norms, Q and K.
  static Op retrieval_projection(const Scenario& sc, double tokens) {
    const double bytes = draft_bytes(sc.draft, sc.draft_part == DraftPart::Full ? DraftPart::HeadEagleInput : sc.draft_part);
    Op op;
    op.name = "retrieval_head";
    op.category = "retrieval";
    op.flops = 2.0 * tokens * bytes / sc.draft.weight_bytes_per_param;
    op.hbm_bytes = bytes + tokens * static_cast<double>(3 * sc.draft.target_hidden + sc.draft.q_heads * sc.draft.head_dim) * ops::kAct;
    op.launches = 4;
    return op;
  }
};

}  // namespace

std::unique_ptr<SystemModel> make_specontext() { return std::make_unique<SpeContext>(); }

}  // namespace specontext
