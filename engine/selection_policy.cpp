#include "engine/selection_policy.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <vector>

#include "sim/config_error.hpp"

namespace specontext {

const char* to_string(SelectionPolicy policy) {
  switch (policy) {
    case SelectionPolicy::Full: return "full";
    case SelectionPolicy::Streaming: return "streaming";
    case SelectionPolicy::Oracle: return "oracle";
    case SelectionPolicy::SpeContext: return "specontext";
    case SelectionPolicy::SpeContextBatch: return "specontext-batch";
    case SelectionPolicy::Quest: return "quest";
  }
  return "?";
}

SelectionPolicy parse_selection_policy(std::string_view name, const std::string& origin) {
  for (SelectionPolicy p : {SelectionPolicy::Full, SelectionPolicy::Streaming, SelectionPolicy::Oracle, SelectionPolicy::SpeContext,
                            SelectionPolicy::SpeContextBatch, SelectionPolicy::Quest})
    if (name == to_string(p)) return p;
  throw ConfigError(origin, "", "unknown policy '" + std::string(name) + "' (full, streaming, oracle, specontext, specontext-batch, quest)");
}

bool needs_retrieval_head(SelectionPolicy policy) {
  return policy == SelectionPolicy::SpeContext || policy == SelectionPolicy::SpeContextBatch;
}

void require_offloadable(SelectionPolicy policy, const std::string& origin) {
  if (policy == SelectionPolicy::Streaming || needs_retrieval_head(policy)) return;
  throw ConfigError(origin, "", std::string("offloaded layers load one selection per step shared by every layer: policy ") + to_string(policy) +
                                    " has none (use streaming, specontext or specontext-batch)");
}

TokenSelection streaming_selection(int kv_heads, std::int64_t positions, std::int64_t budget) {
  if (budget < 1) throw std::invalid_argument("streaming_selection: the budget must be at least 1, got " + std::to_string(budget));
  if (kv_heads < 1 || positions < 1) throw std::invalid_argument("streaming_selection: need at least one head and one position");
  TokenSelection sel;
  sel.kv_heads = kv_heads;
  sel.count = std::min(budget, positions);
  std::vector<std::int32_t> row;
  const std::int64_t sinks = std::min(kStreamingSinks, sel.count);
  for (std::int64_t p = 0; p < sinks; ++p) row.push_back(static_cast<std::int32_t>(p));
  for (std::int64_t p = positions - (sel.count - sinks); p < positions; ++p) row.push_back(static_cast<std::int32_t>(p));
  for (int g = 0; g < kv_heads; ++g) sel.indices.insert(sel.indices.end(), row.begin(), row.end());
  return sel;
}

double selection_overlap(const TokenSelection& now, const TokenSelection& before) {
  if (now.kv_heads != before.kv_heads) throw std::invalid_argument("selection_overlap: the selections have different heads");
  if (now.kv_heads == 0 || now.count == 0) return 1.0;
  double sum = 0;
  for (int g = 0; g < now.kv_heads; ++g) {
    const auto a = now.head(g), b = before.head(g);
    std::vector<std::int32_t> common;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
    sum += static_cast<double>(common.size()) / static_cast<double>(now.count);
  }
  return sum / now.kv_heads;
}

}  // namespace specontext
