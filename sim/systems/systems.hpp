#pragma once
// Factories of the modelled systems, one source file each.
#include <memory>

#include "sim/system_model.hpp"

namespace specontext {

std::unique_ptr<SystemModel> make_hf_eager();
std::unique_ptr<SystemModel> make_hf_flash();
std::unique_ptr<SystemModel> make_flashinfer();
std::unique_ptr<SystemModel> make_quest();
std::unique_ptr<SystemModel> make_clusterkv();
std::unique_ptr<SystemModel> make_shadowkv();
std::unique_ptr<SystemModel> make_specontext();

// Memory shared by the systems that keep every layer's KV on the GPU: weights with the
// paper's 30% runtime allowance and the KV of all layers.
MemoryUse dense_kv_memory(const Scenario& sc, long long S);

// Per-layer retrieval methods (Quest, ClusterKV, ShadowKV) build their page bounds,
// centroids or low-rank keys from the prompt only; the tokens generated since stay whole
// (PAPER.md §1.1, problem 2). Tokens one sparse layer attends to per KV head at length S:
double prompt_sparse_tokens(const Scenario& sc, long long S);

}  // namespace specontext
