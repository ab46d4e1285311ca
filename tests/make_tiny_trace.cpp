// Writes a tiny attention trace for the command-line tests of `specontext replay` and
// `specontext sim --overlap-from` (tests/CMakeLists.txt): 1 layer, 1 KV head, b_max 4, policy
// "specontext" (shared, head-level), two requests of two decode steps each, interleaved.
// Its specontext overlap at B = 3 is 5/6 (request 0: {2,3,4} then {3,4,10}: 2/3; request 1: 1),
// the same trace as TraceReplay.OverlapPairsStepsOfTheSameRequestWithoutT.
// usage: specontext_make_tiny_trace FILE
#include <iostream>

#include "traces/trace_file.hpp"

using namespace specontext::traces;

namespace {

HeadAttention attention(const std::vector<std::pair<int, float>>& entries) {
  HeadAttention a;
  for (const auto& [pos, p] : entries) {
    a.positions.push_back(pos);
    a.probabilities.push_back(p);
  }
  return a;
}

StepRecord record(int request, int step, std::int64_t t, HeadAttention att, std::vector<std::int32_t> ranking) {
  StepRecord r;
  r.request = request;
  r.step = step;
  r.position = t;
  r.attention = {std::move(att)};
  r.rankings = {{std::move(ranking)}};
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: specontext_make_tiny_trace FILE\n";
    return 2;
  }
  try {
    TraceHeader h;
    h.model = "tiny";
    h.task = "cli-test";
    h.prompt_source = "tests/make_tiny_trace.cpp";
    h.backend = "cpu";
    h.config_hash = fnv1a64_hex("tiny");
    h.layers = 1;
    h.q_heads = 1;
    h.kv_heads = 1;
    h.head_dim = 4;
    h.b_max = 4;
    h.prompt_tokens = 10;
    h.max_new = 2;
    h.requests = 2;
    TracePolicy p;
    p.name = "specontext";
    h.policies = {p};
    const HeadAttention step0 = attention({{10, 0.5f}, {3, 0.125f}, {4, 0.0625f}, {2, 0.03125f}, {1, 0.015625f}});
    const HeadAttention step1 = attention({{11, 0.5f}, {3, 0.125f}, {4, 0.0625f}, {2, 0.03125f}, {1, 0.015625f}, {10, 0.0078125f}});
    TraceWriter w(argv[1], h);
    w.write(record(0, 0, 10, step0, {2, 3, 4}));
    w.write(record(1, 0, 10, step0, {1, 2, 3}));
    w.write(record(1, 1, 11, step1, {1, 2, 3}));
    w.write(record(0, 1, 11, step1, {3, 4, 10}));
    w.close();
  } catch (const std::exception& e) {
    std::cerr << "specontext_make_tiny_trace: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
