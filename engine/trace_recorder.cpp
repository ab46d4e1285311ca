#include "engine/trace_recorder.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "engine/quest_selection.hpp"

namespace specontext {
namespace {

// Keeps what the CPU step shows at every layer: the group attention, and Quest's rankings.
class RecordingProbe final : public AttentionProbe {
 public:
  RecordingProbe(const ModelShape& shape, bool quest, std::int64_t limit) : shape_(shape), quest_(quest), limit_(limit) {}

  void layer(int layer, std::int64_t positions, const float* group_attention, const float* keys, const float* queries) override {
    const auto l = static_cast<std::size_t>(layer);
    if (attention.size() <= l) attention.resize(l + 1), quest.resize(l + 1);
    attention[l].assign(group_attention, group_attention + shape_.kv_heads * positions);
    if (!quest_) return;
    const std::vector<float> pages =
        quest_page_scores(keys, positions, static_cast<int>(shape_.kv_heads), static_cast<int>(shape_.head_dim), queries, static_cast<int>(shape_.q_heads));
    const std::int64_t n_pages = (positions + kQuestPageSize - 1) / kQuestPageSize;
    quest[l].clear();
    for (long long g = 0; g < shape_.kv_heads; ++g) quest[l].push_back(quest_ranking(pages.data() + g * n_pages, positions, limit_));
  }

  std::vector<std::vector<float>> attention;                    // [layers][kv_heads * positions]
  std::vector<std::vector<std::vector<std::int32_t>>> quest;    // [layers][kv_heads]

 private:
  const ModelShape& shape_;
  bool quest_;
  std::int64_t limit_;
};

int greedy(const std::vector<float>& logits) { return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin()); }

}  // namespace

traces::TracePolicy trace_policy(SelectionPolicy policy) {
  traces::TracePolicy p;
  p.name = to_string(policy);
  switch (policy) {
    case SelectionPolicy::Streaming: p.per_layer = false, p.head_level = false; break;
    case SelectionPolicy::Quest: p.per_layer = true, p.head_level = true, p.page_size = static_cast<int>(kQuestPageSize); break;
    case SelectionPolicy::SpeContext: p.per_layer = false, p.head_level = true; break;
    case SelectionPolicy::SpeContextBatch: p.per_layer = false, p.head_level = false; break;
    default: throw std::invalid_argument(std::string("trace_policy: policy ") + to_string(policy) + " is not recorded as a ranking");
  }
  return p;
}

traces::TraceHeader trace_header(const ModelConfig& config, const TraceRecordOptions& o, const std::vector<std::vector<int>>& prompts) {
  traces::TraceHeader h;
  const ModelShape& s = config.shape;
  h.layers = static_cast<int>(s.layers);
  h.q_heads = static_cast<int>(s.q_heads);
  h.kv_heads = static_cast<int>(s.kv_heads);
  h.head_dim = static_cast<int>(s.head_dim);
  h.b_max = o.b_max;
  h.max_new = o.max_new;
  h.requests = static_cast<int>(prompts.size());
  for (const auto& p : prompts) h.prompt_tokens = std::max<std::int64_t>(h.prompt_tokens, static_cast<std::int64_t>(p.size()));
  for (SelectionPolicy p : o.policies) h.policies.push_back(trace_policy(p));
  return h;
}

std::vector<std::int32_t> rank_positions(const float* scores, std::int64_t n, std::int64_t limit) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const auto better = [scores](std::int32_t a, std::int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  const auto keep = static_cast<std::size_t>(std::min(n, std::max<std::int64_t>(limit, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), better);
  order.resize(keep);
  return order;
}

std::vector<std::int32_t> streaming_ranking(std::int64_t positions, std::int64_t limit) {
  std::vector<std::int32_t> out;
  for (std::int64_t p = 0; p < std::min(positions, kStreamingSinks); ++p) out.push_back(static_cast<std::int32_t>(p));
  for (std::int64_t p = positions - 1; p >= kStreamingSinks; --p) out.push_back(static_cast<std::int32_t>(p));
  if (static_cast<std::int64_t>(out.size()) > limit) out.resize(static_cast<std::size_t>(std::max<std::int64_t>(limit, 0)));
  return out;
}

std::vector<std::int32_t> quest_ranking(const float* page_scores, std::int64_t positions, std::int64_t limit) {
  const std::int64_t pages = (positions + kQuestPageSize - 1) / kQuestPageSize;
  const std::int64_t page_limit = (limit + kQuestPageSize - 1) / kQuestPageSize;
  std::vector<std::int32_t> out;
  for (std::int32_t page : rank_positions(page_scores, pages, page_limit))
    for (std::int64_t p = page * kQuestPageSize; p < std::min(positions, (page + 1) * kQuestPageSize); ++p) out.push_back(static_cast<std::int32_t>(p));
  return out;
}

std::int64_t record_traces(RecordableLlm& llm, RetrievalHeadCpu* head, const std::vector<std::vector<int>>& prompts, const TraceRecordOptions& o,
                           traces::TraceWriter& out, const std::function<void(int, int)>& progress) {
  const ModelShape& shape = llm.config().shape;
  const int layers = static_cast<int>(shape.layers), kv_heads = static_cast<int>(shape.kv_heads);
  bool needs_head = false, quest = false;
  for (SelectionPolicy p : o.policies) {
    trace_policy(p);  // rejects policies that have no ranking
    needs_head = needs_head || needs_retrieval_head(p);
    quest = quest || p == SelectionPolicy::Quest;
  }
  if (needs_head && !head) throw std::invalid_argument("record_traces: policies specontext* need the retrieval head");
  if (o.b_max < 1 || o.max_new < 1) throw std::invalid_argument("record_traces: b_max and max_new must be positive");
  if (head) llm.set_feature_layers(head->config().aux_layers);
  std::int64_t written = 0;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    llm.reset(0);
    if (head) head->reset(0);
    std::vector<float> logits = llm.prefill(0, prompts[r]);
    std::vector<float> features;
    const auto last_features = [&] {
      const std::vector<float>& f = llm.features(0);
      features.assign(f.end() - llm.feature_width(), f.end());
    };
    if (head) {
      head->prefill(0, prompts[r], llm.features(0));
      last_features();
    }
    int token = greedy(logits);
    for (int step = 0; step < o.max_new && llm.length(0) < llm.max_context(); ++step) {
      const std::int64_t t = llm.length(0), positions = t + 1;
      traces::StepRecord rec;
      rec.request = static_cast<std::int32_t>(r);
      rec.step = step;
      rec.position = t;
      HeadAttention a;  // the head's attention; its selection_scores are what its top-B ranks (pooled)
      if (head) {
        a = head->decode(0, token, features);
        if (a.positions() != positions) throw std::logic_error("record_traces: the retrieval head and the LLM disagree on the positions");
      }
      RecordingProbe probe(shape, quest, o.b_max);
      logits = llm.decode_probed(0, token, probe);
      if (static_cast<int>(probe.attention.size()) != layers) throw std::logic_error("record_traces: the probe saw " + std::to_string(probe.attention.size()) + " layers");
      for (SelectionPolicy p : o.policies) {
        std::vector<std::vector<std::int32_t>> lists;
        switch (p) {
          case SelectionPolicy::Streaming: lists.push_back(streaming_ranking(positions, o.b_max)); break;
          case SelectionPolicy::Quest:
            for (int l = 0; l < layers; ++l)
              for (int g = 0; g < kv_heads; ++g) lists.push_back(probe.quest[static_cast<std::size_t>(l)][static_cast<std::size_t>(g)]);
            break;
          case SelectionPolicy::SpeContext: {
            const std::vector<float> scores = a.selection_scores(SelectionLevel::Head);  // [kv_heads][positions]
            for (int g = 0; g < kv_heads; ++g) lists.push_back(rank_positions(scores.data() + g * positions, positions, o.b_max));
            break;
          }
          case SelectionPolicy::SpeContextBatch:
            lists.push_back(rank_positions(a.selection_scores(SelectionLevel::Batch).data(), positions, o.b_max));  // row 0: every row is the same
            break;
          default: break;
        }
        rec.rankings.push_back(std::move(lists));
      }
      // Each (layer, head)'s attention list: its top b_max, every position a ranking of it lists, and t.
      for (int l = 0; l < layers; ++l)
        for (int g = 0; g < kv_heads; ++g) {
          const float* probs = probe.attention[static_cast<std::size_t>(l)].data() + static_cast<std::int64_t>(g) * positions;
          std::vector<std::int32_t> top = rank_positions(probs, positions, o.b_max);
          std::unordered_set<std::int32_t> have(top.begin(), top.end());
          const auto add = [&](std::int32_t pos) {
            if (have.insert(pos).second) top.push_back(pos);
          };
          add(static_cast<std::int32_t>(t));
          for (std::size_t pi = 0; pi < o.policies.size(); ++pi) {
            const traces::TracePolicy tp = trace_policy(o.policies[pi]);
            const std::size_t list = static_cast<std::size_t>((tp.per_layer ? l : 0) * (tp.head_level ? kv_heads : 1) + (tp.head_level ? g : 0));
            for (std::int32_t pos : rec.rankings[pi][list]) add(pos);
          }
          std::sort(top.begin(), top.end(), [probs](std::int32_t a, std::int32_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
          traces::HeadAttention h;
          h.positions = top;
          for (std::int32_t pos : top) h.probabilities.push_back(probs[pos]);
          rec.attention.push_back(std::move(h));
        }
      out.write(rec);
      ++written;
      token = greedy(logits);
      if (head) last_features();
    }
    if (progress) progress(static_cast<int>(r + 1), static_cast<int>(prompts.size()));
  }
  return written;
}

}  // namespace specontext
