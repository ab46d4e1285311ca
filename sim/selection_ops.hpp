#pragma once
// Costs of choosing which KV entries a sparse step reads: scoring the query against
// candidates (every token for SpeContext's head; page bounds, centroids or landmarks for
// the per-layer methods), top-k per KV head, and moving the chosen rows.
#include "sim/model_shape.hpp"
#include "sim/op_cost.hpp"

namespace specontext::ops {

// q . representative for every query head over `candidates` representatives per KV head,
// each `keys_per_candidate` key vectors (2 for Quest's min/max, 1 otherwise); writes fp32
// scores and their softmax.
Op candidate_scores(const char* name, const ModelShape& m, int layer, double requests, double candidates, double keys_per_candidate);

// Max over each query group, then top-`k` of `candidates` per KV head; writes int32 indices.
Op topk_select(const char* name, const ModelShape& m, int layer, double requests, double candidates, double k);

// Rows of `row_bytes` moved over the host link: `rows` per KV head and request, read from (H2D) a
// host buffer of `footprint_bytes` (Hardware::gather_row_floor_s; 0 for writes and whole copies).
Op host_gather(const char* name, Resource r, const ModelShape& m, int layer, double requests, double rows, double row_bytes,
               double footprint_bytes);

// Sparse decode attention over `tokens` gathered entries per KV head (index reads included); its
// KV rows are read through the lists (Hardware::hbm_gather_efficiency).
Op sparse_attention(const ModelShape& m, int layer, double requests, double tokens);

}  // namespace specontext::ops
