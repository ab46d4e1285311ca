#include "engine/policy_backend.hpp"

#include <stdexcept>
#include <string>

namespace specontext {

PolicyBackend::PolicyBackend(CpuBackend& llm, SelectionPolicy policy, std::int64_t budget, RetrievalHeadCpu* head)
    : llm_(llm), policy_(policy), budget_(budget), head_(head), overlap_(static_cast<int>(llm.max_requests())) {
  if (needs_retrieval_head(policy) && !head)
    throw std::invalid_argument(std::string("PolicyBackend: policy ") + to_string(policy) + " needs the retrieval head");
  if (!needs_retrieval_head(policy) && head)
    throw std::invalid_argument(std::string("PolicyBackend: policy ") + to_string(policy) + " takes no retrieval head");
  if (policy != SelectionPolicy::Full && budget < 1)
    throw std::invalid_argument("PolicyBackend: the budget must be at least 1, got " + std::to_string(budget));
  if (head) {
    if (head->feature_width() != static_cast<std::int64_t>(head->config().aux_layers.size()) * llm.config().shape.hidden)
      throw std::invalid_argument("PolicyBackend: the retrieval head's feature width does not match the LLM's aux layers");
    llm_.set_feature_layers(head->config().aux_layers);
  }
  requests_.resize(static_cast<std::size_t>(llm.max_requests()));
}

PolicyBackend::~PolicyBackend() = default;

void PolicyBackend::reset(int request) {
  llm_.reset(request);
  if (head_) head_->reset(request);
  requests_[static_cast<std::size_t>(request)] = RequestState{};
  overlap_.reset(request);
}

std::vector<float> PolicyBackend::prefill(int request, const std::vector<int>& tokens) {
  if (head_ && llm_.length(request) > 0)
    throw std::invalid_argument("PolicyBackend::prefill: with the retrieval head, request " + std::to_string(request) +
                                " must be empty (one prefill per request)");
  std::vector<float> logits = llm_.prefill(request, tokens);
  if (head_) {
    const std::vector<float>& f = llm_.features(request);
    head_->prefill(request, tokens, f);
    requests_[static_cast<std::size_t>(request)].features.assign(f.end() - llm_.feature_width(), f.end());
  }
  return logits;
}

std::vector<float> PolicyBackend::decode(const std::vector<int>& requests, const std::vector<int>& tokens) {
  if (policy_ == SelectionPolicy::Full) return llm_.decode(requests, tokens);
  if (requests.size() != tokens.size())
    throw std::invalid_argument("PolicyBackend::decode: " + std::to_string(requests.size()) + " requests but " + std::to_string(tokens.size()) +
                                " tokens");
  const int kv_heads = static_cast<int>(llm_.config().shape.kv_heads);
  std::vector<std::vector<TokenSelection>> now(requests.size());
  std::vector<SparseAttention> attention(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const int r = requests[i];
    const std::int64_t positions = llm_.length(r) + 1;  // 0..t, t the entering token
    switch (policy_) {
      case SelectionPolicy::Streaming: now[i].push_back(streaming_selection(kv_heads, positions, budget_)); break;
      case SelectionPolicy::Oracle: attention[i].oracle_budget = budget_; break;
      case SelectionPolicy::Quest: attention[i].quest_budget = budget_; break;
      case SelectionPolicy::SpeContext:
      case SelectionPolicy::SpeContextBatch: {
        RequestState& st = requests_.at(static_cast<std::size_t>(r));
        if (st.features.empty()) throw std::invalid_argument("PolicyBackend::decode: request " + std::to_string(r) + " has no prefill");
        const HeadAttention a = head_->decode(r, tokens[i], st.features);
        if (a.positions() != positions)
          throw std::logic_error("PolicyBackend::decode: the retrieval head covers " + std::to_string(a.positions()) + " positions, the LLM " +
                                 std::to_string(positions));
        now[i].push_back(select_positions(a, budget_, policy_ == SelectionPolicy::SpeContext ? SelectionLevel::Head : SelectionLevel::Batch));
        break;
      }
      case SelectionPolicy::Full: break;
    }
    if (!now[i].empty()) attention[i].selection = &now[i].front();
    else attention[i].layer_selections = &now[i];
    attention[i].mass = &mass_;
  }
  std::vector<float> logits = llm_.decode_sparse(requests, tokens, attention);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    overlap_.record(requests[i], std::move(now[i]));
    RequestState& st = requests_.at(static_cast<std::size_t>(requests[i]));
    if (head_) {
      const std::vector<float>& f = llm_.features(requests[i]);
      st.features.assign(f.end() - llm_.feature_width(), f.end());
    }
  }
  return logits;
}

const std::vector<TokenSelection>& PolicyBackend::last_selections(int request) const { return overlap_.last(request); }

}  // namespace specontext
