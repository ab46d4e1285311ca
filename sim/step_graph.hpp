#pragma once
// One step (decode or prefill) as a dataflow graph of operations over resources, and its
// schedule. Each resource executes its ops in issue order (a stream); an op starts when
// its resource is free and every op it depends on has finished. With both kinds of edge
// in one DAG, the schedule is the longest path with op durations as node weights, and
// the critical path is that path.
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <nlohmann/json.hpp>

#include "sim/op_cost.hpp"

namespace specontext {

using OpId = std::size_t;

struct ScheduledOp {
  OpId id = 0;
  double start = 0;
  double end = 0;
  const char* bound = "";
  bool critical = false;
};

struct Schedule {
  std::vector<ScheduledOp> ops;  // indexed by OpId
  double makespan = 0;
  std::vector<OpId> critical_path;  // first to last
  std::array<double, kResourceCount> busy_seconds{};  // per Resource
};

class StepGraph {
 public:
  enum class EdgeKind { Data, StreamOrder };

  // Adds an op after `deps` (data dependencies) and after the previous op on its resource.
  OpId add(Op op, const std::vector<OpId>& deps = {});
  // The last op issued on a resource, if any (to chain a new stream's first op).
  bool has_last(Resource r) const { return last_on_[static_cast<int>(r)] != kNone; }
  OpId last(Resource r) const;

  std::size_t size() const { return boost::num_vertices(graph_); }
  const Op& op(OpId id) const { return graph_[id]; }
  Op& mutable_op(OpId id) { return graph_[id]; }

  Schedule schedule(const Hardware& hw) const;
  // Sum over ops of a field, e.g. total link bytes of the step.
  double total(double Op::*field) const;
  double total_link_bytes(Resource r) const;

 private:
  static constexpr OpId kNone = static_cast<OpId>(-1);
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, Op, EdgeKind>;
  Graph graph_;
  std::array<OpId, kResourceCount> last_on_{kNone, kNone, kNone, kNone};
};

// Chrome trace (traceEvents, microseconds) of a scheduled step: one thread per resource;
// ops on the critical path carry "critical": true in their args.
nlohmann::json chrome_trace(const StepGraph& g, const Schedule& s, const std::string& title);

}  // namespace specontext
