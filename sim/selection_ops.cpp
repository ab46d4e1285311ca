#include "sim/selection_ops.hpp"

#include "sim/transformer_ops.hpp"

namespace specontext::ops {

Op candidate_scores(const char* name, const ModelShape& m, int layer, double requests, double candidates, double keys_per_candidate) {
  Op op;
  op.name = name;
  op.category = "retrieval";
  op.layer = layer;
  const double nq = static_cast<double>(m.q_heads), nkv = static_cast<double>(m.kv_heads), d = static_cast<double>(m.head_dim);
  op.flops = 2.0 * requests * nq * d * candidates * keys_per_candidate + 5.0 * requests * nq * candidates;
  // representative keys (bf16), then fp32 logits written, read, probabilities written
  op.hbm_bytes = requests * nkv * candidates * keys_per_candidate * d * kAct + requests * nq * candidates * 4.0 * 3.0;
  op.launches = 2;
  return op;
}

Op topk_select(const char* name, const ModelShape& m, int layer, double requests, double candidates, double k) {
  Op op;
  op.name = name;
  op.category = "select";
  op.layer = layer;
  const double nq = static_cast<double>(m.q_heads), nkv = static_cast<double>(m.kv_heads);
  // read per-query-head scores, write and re-read the group maxima, write the indices
  op.hbm_bytes = requests * (nq * candidates * 4.0 + 2.0 * nkv * candidates * 4.0 + nkv * k * 4.0);
  op.flops = requests * (nq + nkv) * candidates;
  op.launches = 2;
  return op;
}

Op host_gather(const char* name, Resource r, const ModelShape& m, int layer, double requests, double rows, double row_bytes,
               double footprint_bytes) {
  Op op;
  op.name = name;
  op.category = "prefetch";
  op.resource = r;
  op.layer = layer;
  op.link_bytes = requests * static_cast<double>(m.kv_heads) * rows * row_bytes;
  op.link_row_bytes = row_bytes;
  op.link_footprint_bytes = footprint_bytes;
  op.launches = 1;
  return op;
}

Op sparse_attention(const ModelShape& m, int layer, double requests, double tokens) {
  Op op = decode_attention(m, layer, requests, tokens);
  op.name = "sparse_attention";
  op.hbm_bytes += requests * static_cast<double>(m.kv_heads) * tokens * 4.0;
  op.indexed_reads = true;
  return op;
}

}  // namespace specontext::ops
