#include "sim/step_graph.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>

#include <boost/graph/topological_sort.hpp>

namespace specontext {

OpId StepGraph::add(Op op, const std::vector<OpId>& deps) {
  const int r = static_cast<int>(op.resource);
  OpId id = boost::add_vertex(std::move(op), graph_);
  for (OpId d : deps) {
    if (d >= id) throw std::logic_error("step graph: dependency on an op not yet added");
    boost::add_edge(d, id, EdgeKind::Data, graph_);
  }
  if (last_on_[r] != kNone) boost::add_edge(last_on_[r], id, EdgeKind::StreamOrder, graph_);
  last_on_[r] = id;
  return id;
}

OpId StepGraph::last(Resource r) const {
  OpId id = last_on_[static_cast<int>(r)];
  if (id == kNone) throw std::logic_error("step graph: no op issued on this resource yet");
  return id;
}

Schedule StepGraph::schedule(const Hardware& hw) const {
  const std::size_t n = size();
  Schedule s;
  s.ops.resize(n);
  std::vector<OpId> order;
  order.reserve(n);
  boost::topological_sort(graph_, std::back_inserter(order));  // throws not_a_dag on a cycle
  std::reverse(order.begin(), order.end());

  constexpr OpId kNoPred = static_cast<OpId>(-1);
  std::vector<OpId> binding_pred(n, kNoPred);  // the predecessor whose end fixed our start
  for (OpId v : order) {
    double start = 0;
    for (auto [e, end] = boost::in_edges(v, graph_); e != end; ++e) {
      OpId u = boost::source(*e, graph_);
      if (binding_pred[v] == kNoPred || s.ops[u].end > start) {
        start = std::max(start, s.ops[u].end);
        binding_pred[v] = u;
      }
    }
    OpTime t = op_time(graph_[v], hw);
    s.ops[v] = ScheduledOp{v, start, start + t.seconds, t.bound, false};
    s.busy_seconds[static_cast<int>(graph_[v].resource)] += t.seconds;
  }
  if (n == 0) return s;
  OpId last = 0;
  for (OpId v = 0; v < n; ++v)
    if (s.ops[v].end > s.ops[last].end) last = v;
  s.makespan = s.ops[last].end;
  for (OpId v = last; v != kNoPred; v = binding_pred[v]) {
    s.ops[v].critical = true;
    s.critical_path.push_back(v);
  }
  std::reverse(s.critical_path.begin(), s.critical_path.end());
  return s;
}

double StepGraph::total(double Op::*field) const {
  double sum = 0;
  for (OpId v = 0; v < size(); ++v) sum += graph_[v].*field;
  return sum;
}

double StepGraph::total_link_bytes(Resource r) const {
  double sum = 0;
  for (OpId v = 0; v < size(); ++v)
    if (graph_[v].resource == r) sum += graph_[v].link_bytes;
  return sum;
}

nlohmann::json chrome_trace(const StepGraph& g, const Schedule& s, const std::string& title) {
  nlohmann::json events = nlohmann::json::array();
  for (int r = 0; r < kResourceCount; ++r) {
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", r},
                      {"args", {{"name", to_string(static_cast<Resource>(r))}}}});
  }
  events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"args", {{"name", title}}}});
  for (const auto& so : s.ops) {
    const Op& op = g.op(so.id);
    nlohmann::json args = {{"category", op.category}, {"bound", so.bound}, {"critical", so.critical}};
    if (op.layer >= 0) args["layer"] = op.layer;
    if (op.flops > 0) args["flops"] = op.flops;
    if (op.hbm_bytes > 0) args["hbm_bytes"] = op.hbm_bytes;
    if (op.link_bytes > 0) args["link_bytes"] = op.link_bytes;
    events.push_back({{"ph", "X"}, {"name", op.name}, {"cat", op.category}, {"pid", 1},
                      {"tid", static_cast<int>(op.resource)}, {"ts", so.start * 1e6},
                      {"dur", (so.end - so.start) * 1e6}, {"args", args}});
  }
  return {{"traceEvents", events}, {"displayTimeUnit", "ms"}, {"otherData", {{"source", "specontext sim (predicted)"}, {"step_ms", s.makespan * 1e3}}}};
}

}  // namespace specontext
