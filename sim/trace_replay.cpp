#include "sim/trace_replay.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <span>
#include <utility>

#include "sim/config_error.hpp"

namespace specontext {
namespace {

using Positions = std::span<const std::int32_t>;

// A policy as replayed: a recorded one (its index in the header and the records), the oracle or
// the shared oracle.
constexpr int kOracleIndex = -1, kSharedOracleIndex = -2;
struct PolicyView {
  std::string name;
  int index = kOracleIndex;  // kOracleIndex: the attention list is its ranking; kSharedOracleIndex: shared_oracle_rankings
  bool per_layer = true, head_level = true;
  int page_size = 1;
};

struct Shape {
  int layers = 0, kv_heads = 0;
};

int lists_of(const PolicyView& p, const Shape& s) { return (p.per_layer ? s.layers : 1) * (p.head_level ? s.kv_heads : 1); }
int list_index(const PolicyView& p, const Shape& s, int layer, int head) {
  return (p.per_layer ? layer : 0) * (p.head_level ? s.kv_heads : 1) + (p.head_level ? head : 0);
}

// Positions of a budget-B selection taken from a ranking of `length` positions (without t).
std::size_t selection_count(std::int64_t budget, int page_size, std::size_t length) {
  std::int64_t n = budget;
  if (page_size > 1) n = (budget + page_size - 1) / page_size * page_size;
  return static_cast<std::size_t>(std::min<std::int64_t>(n, static_cast<std::int64_t>(length)));
}

std::string where(std::size_t record, const traces::StepRecord& r) {
  return "trace record " + std::to_string(record) + " (request " + std::to_string(r.request) + ", step " + std::to_string(r.step) + ")";
}

// Per record and KV head: positions by their attention summed over the layers, best first (ties:
// the lower position), the first `limit`.
using SharedRankings = std::vector<std::vector<std::vector<std::int32_t>>>;
SharedRankings shared_oracle_rankings(const traces::Trace& t, int layers, int kv_heads, std::int64_t limit) {
  SharedRankings out(t.steps.size());
  std::vector<double> sum;
  std::vector<char> listed;
  std::vector<std::int32_t> seen;  // the positions some layer lists, once each
  for (std::size_t i = 0; i < t.steps.size(); ++i) {
    const auto& r = t.steps[i];
    sum.assign(static_cast<std::size_t>(r.position) + 1, 0.0);
    listed.assign(sum.size(), 0);
    for (int g = 0; g < kv_heads; ++g) {
      seen.clear();
      for (int l = 0; l < layers; ++l) {
        const auto& a = r.attention[static_cast<std::size_t>(l) * static_cast<std::size_t>(kv_heads) + static_cast<std::size_t>(g)];
        for (std::size_t q = 0; q < a.positions.size(); ++q) {
          const auto pos = static_cast<std::size_t>(a.positions[q]);
          sum[pos] += a.probabilities[q];
          if (!listed[pos]) listed[pos] = 1, seen.push_back(a.positions[q]);
        }
      }
      std::sort(seen.begin(), seen.end(), [&](std::int32_t x, std::int32_t y) {
        const double sx = sum[static_cast<std::size_t>(x)], sy = sum[static_cast<std::size_t>(y)];
        return sx != sy ? sx > sy : x < y;
      });
      out[i].emplace_back(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(std::min<std::int64_t>(limit, static_cast<std::int64_t>(seen.size()))));
      for (const auto pos : seen) sum[static_cast<std::size_t>(pos)] = 0.0, listed[static_cast<std::size_t>(pos)] = 0;
    }
  }
  return out;
}

// The ranking of list `k` of policy `p` in record `i` (checked: sizes and positions in 0..t).
Positions ranking(const traces::Trace& t, std::size_t i, const PolicyView& p, int k, const SharedRankings& shared) {
  const traces::StepRecord& r = t.steps[i];
  if (p.index == kSharedOracleIndex) {
    const auto& list = shared[i][static_cast<std::size_t>(k)];
    return Positions(list.data(), list.size());
  }
  if (p.index < 0) {
    const auto& a = r.attention[static_cast<std::size_t>(k)].positions;
    return Positions(a.data(), a.size());
  }
  const auto& list = r.rankings[static_cast<std::size_t>(p.index)][static_cast<std::size_t>(k)];
  return Positions(list.data(), list.size());
}

void check_shape(const traces::Trace& t, const Shape& s) {
  const auto& h = t.header;
  for (std::size_t i = 0; i < t.steps.size(); ++i) {
    const auto& r = t.steps[i];
    if (r.attention.size() != static_cast<std::size_t>(s.layers) * static_cast<std::size_t>(s.kv_heads))
      throw traces::TraceError(where(i, r) + ": field 'attention': " + std::to_string(r.attention.size()) + " lists, expected layers * kv_heads = " +
                               std::to_string(s.layers * s.kv_heads));
    for (const auto& a : r.attention) {
      if (a.positions.size() != a.probabilities.size())
        throw traces::TraceError(where(i, r) + ": field 'attention': positions and probabilities differ in length");
      for (const auto pos : a.positions)
        if (pos < 0 || pos > r.position) throw traces::TraceError(where(i, r) + ": field 'attention': position " + std::to_string(pos) + " outside 0..t");
    }
    if (r.rankings.size() != h.policies.size())
      throw traces::TraceError(where(i, r) + ": field 'rankings': " + std::to_string(r.rankings.size()) + " policies, the header has " +
                               std::to_string(h.policies.size()));
    for (std::size_t p = 0; p < h.policies.size(); ++p) {
      if (r.rankings[p].size() != static_cast<std::size_t>(h.policies[p].lists(s.layers, s.kv_heads)))
        throw traces::TraceError(where(i, r) + ": field 'rankings': policy '" + h.policies[p].name + "' has " + std::to_string(r.rankings[p].size()) +
                                 " lists, expected " + std::to_string(h.policies[p].lists(s.layers, s.kv_heads)));
      for (const auto& list : r.rankings[p])
        for (const auto pos : list)
          if (pos < 0 || pos > r.position)
            throw traces::TraceError(where(i, r) + ": field 'rankings': policy '" + h.policies[p].name + "' ranks position " + std::to_string(pos) +
                                     " outside 0..t");
    }
  }
}

std::vector<std::int64_t> checked_budgets(const traces::Trace& t, std::vector<std::int64_t> budgets, const std::string& flag) {
  if (budgets.empty()) throw ConfigError(flag, "", "no budgets given");
  for (const auto b : budgets)
    if (b < 1 || b > t.header.b_max)
      throw ConfigError(flag, "", "budget " + std::to_string(b) + " must be in 1.." + std::to_string(t.header.b_max) + " (the trace's b_max)");
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  return budgets;
}

std::vector<PolicyView> all_policies(const traces::TraceHeader& h, bool shared_oracle) {
  std::vector<PolicyView> out;
  const auto recorded = [&](const char* name) {
    return std::any_of(h.policies.begin(), h.policies.end(), [&](const traces::TracePolicy& p) { return p.name == name; });
  };
  if (!recorded(kOraclePolicy)) out.push_back(PolicyView{kOraclePolicy, kOracleIndex, true, true, 1});
  if (shared_oracle && !recorded(kSharedOraclePolicy)) out.push_back(PolicyView{kSharedOraclePolicy, kSharedOracleIndex, false, true, 1});
  for (std::size_t i = 0; i < h.policies.size(); ++i) {
    const auto& p = h.policies[i];
    out.push_back(PolicyView{p.name, static_cast<int>(i), p.per_layer, p.head_level, std::max(1, p.page_size)});
  }
  return out;
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double x = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(x));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (x - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

Spread spread_of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (const double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.p10 = percentile(v, 0.10);
  s.p90 = percentile(v, 0.90);
  return s;
}

// Per policy and budget: what the passes accumulate.
struct Accum {
  std::vector<double> step_recall;  // per record
  std::vector<double> layer_recall;  // per layer, summed over records and heads
  double selected = 0, selected_without_t = 0;  // summed over records, layers and heads
  double overlap = 0;  // summed over step pairs
  std::int64_t pairs = 0;
};

std::vector<ReplayResult> replay(const traces::Trace& t, const std::vector<PolicyView>& policies, const std::vector<std::int64_t>& budgets,
                                 const ModelShape* target) {
  const Shape s{t.header.layers, t.header.kv_heads};
  if (s.layers <= 0 || s.kv_heads <= 0) throw traces::TraceError("trace header: field 'layers'/'kv_heads': must be positive");
  if (t.steps.empty()) throw ConfigError("trace", "", "holds no decode steps: nothing to replay");
  check_shape(t, s);
  const std::size_t records = t.steps.size(), nb = budgets.size();
  const std::size_t heads = static_cast<std::size_t>(s.layers) * static_cast<std::size_t>(s.kv_heads);

  std::int64_t max_position = 0;
  for (const auto& r : t.steps) max_position = std::max(max_position, r.position);
  const auto dense = static_cast<std::size_t>(max_position) + 1;

  const bool any_shared = std::any_of(policies.begin(), policies.end(), [](const PolicyView& p) { return p.index == kSharedOracleIndex; });
  const SharedRankings shared = any_shared ? shared_oracle_rankings(t, s.layers, s.kv_heads, budgets.back()) : SharedRankings{};

  std::vector<std::vector<Accum>> acc(policies.size(), std::vector<Accum>(nb));
  for (auto& per_policy : acc)
    for (auto& a : per_policy) {
      a.step_recall.assign(records, 0.0);
      a.layer_recall.assign(static_cast<std::size_t>(s.layers), 0.0);
    }

  // Recall and selection sizes: per record, (layer, head), policy and budget.
  std::vector<double> prob(dense, 0.0);
  std::vector<double> prefix;
  for (std::size_t i = 0; i < records; ++i) {
    const auto& r = t.steps[i];
    const auto tpos = static_cast<std::int32_t>(r.position);
    for (int layer = 0; layer < s.layers; ++layer)
      for (int head = 0; head < s.kv_heads; ++head) {
        const auto& att = r.attention[static_cast<std::size_t>(layer) * static_cast<std::size_t>(s.kv_heads) + static_cast<std::size_t>(head)];
        for (std::size_t q = 0; q < att.positions.size(); ++q) prob[static_cast<std::size_t>(att.positions[q])] = att.probabilities[q];
        for (std::size_t p = 0; p < policies.size(); ++p) {
          const PolicyView& pv = policies[p];
          const Positions list = ranking(t, i, pv, list_index(pv, s, layer, head), shared);
          const std::size_t longest = selection_count(budgets.back(), pv.page_size, list.size());
          prefix.assign(longest + 1, 0.0);
          std::size_t t_rank = list.size();  // where t is in the ranking (list.size(): absent)
          for (std::size_t q = 0; q < longest; ++q) {
            prefix[q + 1] = prefix[q] + prob[static_cast<std::size_t>(list[q])];
            if (list[q] == tpos) t_rank = q;
          }
          for (std::size_t b = 0; b < nb; ++b) {
            const std::size_t n = selection_count(budgets[b], pv.page_size, list.size());
            const bool add_t = t_rank >= n;
            const double recall = prefix[n] + (add_t ? prob[static_cast<std::size_t>(tpos)] : 0.0);
            Accum& a = acc[p][b];
            a.step_recall[i] += recall / static_cast<double>(heads);
            a.layer_recall[static_cast<std::size_t>(layer)] += recall;
            a.selected += static_cast<double>(n + (add_t ? 1 : 0));
            a.selected_without_t += static_cast<double>(n);
          }
        }
        for (const auto pos : att.positions) prob[static_cast<std::size_t>(pos)] = 0.0;
      }
  }

  // Overlap: each record with its request's previous step (records may interleave).
  std::map<std::pair<std::int32_t, std::int32_t>, std::size_t> by_step;
  for (std::size_t i = 0; i < records; ++i) {
    const auto& r = t.steps[i];
    if (!by_step.emplace(std::make_pair(r.request, r.step), i).second)
      throw traces::TraceError(where(i, r) + ": a second record of the same request and step");
  }
  constexpr std::int32_t kAbsent = std::numeric_limits<std::int32_t>::max();
  std::vector<std::int32_t> prev_rank(dense, kAbsent);
  std::vector<double> pair_sum(nb);
  for (std::size_t i = 0; i < records; ++i) {
    const auto& now = t.steps[i];
    const auto it = by_step.find(std::make_pair(now.request, now.step - 1));
    if (now.step == 0 || it == by_step.end()) continue;
    for (std::size_t p = 0; p < policies.size(); ++p) {
      const PolicyView& pv = policies[p];
      const int lists = lists_of(pv, s);  // each list applies to equally many (layer, head): their mean is the (layer, head) mean
      std::fill(pair_sum.begin(), pair_sum.end(), 0.0);
      for (int k = 0; k < lists; ++k) {
        const Positions a = ranking(t, i, pv, k, shared), b = ranking(t, it->second, pv, k, shared);
        const std::size_t b_longest = selection_count(budgets.back(), pv.page_size, b.size());
        for (std::size_t q = 0; q < b_longest; ++q) prev_rank[static_cast<std::size_t>(b[q])] = static_cast<std::int32_t>(q);
        for (std::size_t bi = 0; bi < nb; ++bi) {
          const std::size_t n_now = selection_count(budgets[bi], pv.page_size, a.size());
          const auto n_prev = static_cast<std::int32_t>(selection_count(budgets[bi], pv.page_size, b.size()));
          if (n_now == 0) {
            pair_sum[bi] += 1.0;  // as the engine's selection_overlap
            continue;
          }
          std::size_t common = 0;
          for (std::size_t q = 0; q < n_now; ++q) common += prev_rank[static_cast<std::size_t>(a[q])] < n_prev ? 1 : 0;
          pair_sum[bi] += static_cast<double>(common) / static_cast<double>(n_now);
        }
        for (std::size_t q = 0; q < b_longest; ++q) prev_rank[static_cast<std::size_t>(b[q])] = kAbsent;
      }
      for (std::size_t bi = 0; bi < nb; ++bi) {
        acc[p][bi].overlap += pair_sum[bi] / static_cast<double>(lists);
        ++acc[p][bi].pairs;
      }
    }
  }

  std::vector<ReplayResult> out;
  for (std::size_t p = 0; p < policies.size(); ++p)
    for (std::size_t b = 0; b < nb; ++b) {
      const Accum& a = acc[p][b];
      ReplayResult res;
      res.policy = policies[p].name;
      res.budget = budgets[b];
      res.recall = spread_of(a.step_recall);
      res.recall_per_layer.resize(static_cast<std::size_t>(s.layers));
      for (std::size_t l = 0; l < res.recall_per_layer.size(); ++l)
        res.recall_per_layer[l] = a.layer_recall[l] / static_cast<double>(records * static_cast<std::size_t>(s.kv_heads));
      if (a.pairs > 0) res.overlap = a.overlap / static_cast<double>(a.pairs);
      const double cells = static_cast<double>(records * heads);
      res.selected = a.selected / cells;
      if (target != nullptr && res.overlap) {
        const double b_eff = std::min(static_cast<double>(budgets[b]), a.selected_without_t / cells);
        res.load_bytes_per_step = (1.0 - *res.overlap) * b_eff * static_cast<double>(target->kv_heads) * static_cast<double>(target->layers) * 2.0 *
                                  static_cast<double>(target->head_dim) * 2.0;
      }
      out.push_back(std::move(res));
    }
  return out;
}

}  // namespace

std::vector<ReplayResult> replay_trace(const traces::Trace& t, const ReplayOptions& o) {
  const auto budgets = checked_budgets(t, o.budgets, "--budgets");
  return replay(t, all_policies(t.header, o.shared_oracle), budgets, o.target);
}

double trace_overlap(const traces::Trace& t, const std::string& policy, std::int64_t budget) {
  const auto policies = all_policies(t.header, true);
  const auto it = std::find_if(policies.begin(), policies.end(), [&](const PolicyView& p) { return p.name == policy; });
  if (it == policies.end()) {
    std::string names;
    for (const auto& p : policies) names += (names.empty() ? "" : ", ") + p.name;
    throw ConfigError("--overlap-policy", "", "policy '" + policy + "' is not recorded in the trace (it has: " + names + ")");
  }
  const auto budgets = checked_budgets(t, {budget}, "--budget");
  const auto results = replay(t, {*it}, budgets, nullptr);
  if (!results.front().overlap)
    throw ConfigError("--overlap-from", "", "no request of the trace has 2 decode steps: there is no adjacent-step overlap to measure");
  return *results.front().overlap;
}

nlohmann::json to_json(const ReplayResult& r) {
  nlohmann::json j;
  j["policy"] = r.policy;
  j["budget"] = r.budget;
  j["recall"] = {{"mean", r.recall.mean}, {"min", r.recall.min}, {"max", r.recall.max},
                 {"p10", r.recall.p10},   {"p90", r.recall.p90}, {"per_layer", r.recall_per_layer}};
  j["overlap"] = r.overlap ? nlohmann::json(*r.overlap) : nlohmann::json(nullptr);
  j["selected"] = r.selected;
  j["load_bytes_per_step"] = r.load_bytes_per_step ? nlohmann::json(*r.load_bytes_per_step) : nlohmann::json(nullptr);
  return j;
}

std::vector<std::int64_t> default_replay_budgets(std::int64_t b_max) {
  std::vector<std::int64_t> out;
  for (std::int64_t b = 16; b <= b_max; b *= 2) out.push_back(b);
  if (out.empty() || out.back() != b_max) out.push_back(b_max);
  return out;
}

nlohmann::json replay_report_json(const traces::Trace& t, const std::string& file, const ModelShape* target, const std::vector<ReplayResult>& results) {
  nlohmann::json j;
  j["trace"] = traces::to_json(t.header);
  j["file"] = file;
  j["target"] = target ? nlohmann::json(target->name) : nlohmann::json(nullptr);
  j["results"] = nlohmann::json::array();
  for (const auto& r : results) j["results"].push_back(to_json(r));
  return j;
}

}  // namespace specontext
