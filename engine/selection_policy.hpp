#pragma once
// The KV selection policies a decode step can run under (PAPER.md §1, §3; the evaluation's baselines):
//   full              dense attention, every cached position;
//   streaming         StreamingLLM: the 4 attention-sink positions and the most recent B - 4;
//   oracle            per layer and KV head, the LLM's own top-B by this step's attention (mean over
//                     the group's query heads): the upper bound of any selection of B positions;
//   specontext        the retrieval head's head-level top-B (engine/retrieval_head.hpp), one set per
//                     KV head shared by every layer;
//   specontext-batch  the retrieval head's batch-level top-B, one set for every head;
//   quest             Quest's pages of 16 with min/max keys, per layer and KV head
//                     (engine/quest_selection.hpp); CPU reference only so far.
// The sets and the overlap of adjacent steps' sets (paper Fig. 6b) are computed here; PolicyBackend
// (engine/policy_backend.hpp) runs them on the CPU reference.
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/token_selection.hpp"

namespace specontext {

enum class SelectionPolicy { Full, Streaming, Oracle, SpeContext, SpeContextBatch, Quest };

const char* to_string(SelectionPolicy policy);
// The policy named `name`; a ConfigError naming `origin` (the flag) and listing the policies otherwise.
SelectionPolicy parse_selection_policy(std::string_view name, const std::string& origin);
// specontext and specontext-batch: the retrieval head (a distilled LM) chooses.
bool needs_retrieval_head(SelectionPolicy policy);
// Offloaded layers load one selection per step that every layer shares (streaming, specontext,
// specontext-batch); the per-layer policies (oracle, quest) have none. Otherwise a ConfigError
// naming `origin`.
void require_offloadable(SelectionPolicy policy, const std::string& origin);

constexpr std::int64_t kStreamingSinks = 4;

// StreamingLLM's set over positions 0..positions-1 (the last is the token entering): positions
// 0..min(4, B)-1 and the most recent B - 4, the same for every KV head; every position when
// budget >= positions. Throws std::invalid_argument for a budget < 1.
TokenSelection streaming_selection(int kv_heads, std::int64_t positions, std::int64_t budget);

// |now ∩ before| / |now| averaged over the KV heads (both ascending, the same heads); 1 for an empty set.
double selection_overlap(const TokenSelection& now, const TokenSelection& before);

}  // namespace specontext
