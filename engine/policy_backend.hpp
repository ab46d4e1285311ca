#pragma once
// A Backend that runs the CPU reference's decode steps under a KV selection policy
// (engine/selection_policy.hpp), so that the decode loop and the evaluator run any policy unchanged.
// Prefill stays dense, as in the paper; each decode step chooses, per request, the positions every KV
// head attends to and calls CpuBackend::decode_sparse:
//   full        decode() itself (dense);
//   streaming   streaming_selection over positions 0..t;
//   oracle      decode_sparse's per-layer oracle (the LLM's own top-B of this step);
//   quest       decode_sparse's per-layer Quest pages (overlap measured over the pages);
//   specontext  the retrieval head's decode for the entering token, fed the LLM's feature row of the
//               previous position (the wiring of tests/test_retrieval_head_golden.cpp), then its
//               head-level (specontext) or batch-level (specontext-batch) top-B, shared by every layer.
// It also measures the overlap of adjacent steps' selections (engine/overlap_meter.hpp) and the
// attention mass the attended sets capture (engine/attention_mass.hpp).
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/attention_mass.hpp"
#include "engine/backend.hpp"
#include "engine/cpu_backend.hpp"
#include "engine/overlap_meter.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/selection_policy.hpp"

namespace specontext {

class PolicyBackend final : public Backend {
 public:
  // `llm` (and `head`) must outlive this. specontext and specontext-batch need the head, whose aux
  // layers become the LLM's feature layers here; the others take none. Throws std::invalid_argument
  // for a missing head, a head given to another policy, or a budget < 1 for a sparse policy.
  PolicyBackend(CpuBackend& llm, SelectionPolicy policy, std::int64_t budget, RetrievalHeadCpu* head = nullptr);
  ~PolicyBackend() override;

  std::int64_t vocab() const override { return llm_.vocab(); }
  std::int64_t max_requests() const override { return llm_.max_requests(); }
  std::int64_t max_context() const override { return llm_.max_context(); }
  void reset(int request) override;
  // Dense; with the retrieval head, the request must be empty (one prefill per request).
  std::vector<float> prefill(int request, const std::vector<int>& tokens) override;
  std::vector<float> decode(const std::vector<int>& requests, const std::vector<int>& tokens) override;
  std::int64_t length(int request) const override { return llm_.length(request); }

  SelectionPolicy policy() const { return policy_; }
  std::int64_t budget() const { return budget_; }
  // The mean overlap of adjacent steps' selections so far; nullopt before any (policy full: never).
  std::optional<double> overlap_rate() const override { return overlap_.rate(); }
  std::int64_t overlap_samples() const { return overlap_.samples(); }
  void clear_overlap() { overlap_.clear(); }
  // The attention mass every sparse step captured (always measured here: the CPU step has the dense scores).
  const AttentionMassMeter* attention_mass() const override { return policy_ == SelectionPolicy::Full ? nullptr : &mass_; }
  // Request r's selections of its last decode step: one (streaming, specontext*) or one per layer
  // (oracle); empty for full or before a decode step.
  const std::vector<TokenSelection>& last_selections(int request) const;

 private:
  struct RequestState {
    std::vector<float> features;       // the LLM's feature row of the last position (retrieval head)
  };

  CpuBackend& llm_;
  SelectionPolicy policy_;
  std::int64_t budget_;
  RetrievalHeadCpu* head_;
  std::vector<RequestState> requests_;
  OverlapMeter overlap_;
  AttentionMassMeter mass_;
};

}  // namespace specontext
