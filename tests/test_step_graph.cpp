// The scheduler on small graphs whose makespans are known by hand.
#include <gtest/gtest.h>

#include "sim/step_graph.hpp"

namespace specontext {
namespace {

// A machine where a GPU op of N HBM bytes takes N microseconds, and a link op of N bytes
// takes N microseconds too: durations are easy to read off.
Hardware unit_machine() {
  Hardware hw;
  hw.hbm_bandwidth_Bps = 1e6;
  hw.hbm_efficiency = 1;
  hw.dense_bf16_flops = 1e18;
  hw.compute_efficiency = 1;
  hw.h2d_bandwidth_Bps = 1e6;
  hw.d2h_bandwidth_Bps = 1e6;
  hw.host_memory_bandwidth_Bps = 1e12;
  return hw;
}

Op gpu(double us) {
  Op op;
  op.name = "g";
  op.resource = Resource::Gpu;
  op.hbm_bytes = us;
  return op;
}
Op link(double us) {
  Op op;
  op.name = "l";
  op.resource = Resource::H2D;
  op.link_bytes = us;
  return op;
}
Op host(double us) {
  Op op;
  op.name = "h";
  op.resource = Resource::Host;
  op.host_seconds = us * 1e-6;
  return op;
}

TEST(StepGraph, OneStreamIsTheSumOfItsOps) {
  StepGraph g;
  g.add(gpu(3));
  g.add(gpu(4));
  g.add(gpu(5));
  EXPECT_NEAR(g.schedule(unit_machine()).makespan, 12e-6, 1e-12);
}

TEST(StepGraph, IndependentStreamsOverlap) {
  StepGraph g;
  g.add(gpu(10));
  g.add(link(7));
  EXPECT_NEAR(g.schedule(unit_machine()).makespan, 10e-6, 1e-12);
}

TEST(StepGraph, DependenciesAcrossStreams) {
  // host 2 -> gpu 5 ; link 8 (independent) ; gpu 3 waits for the link: start max(7, 8) = 8, end 11
  StepGraph g;
  OpId h = g.add(host(2));
  g.add(gpu(5), {h});
  OpId l = g.add(link(8));
  OpId last = g.add(gpu(3), {l});
  const Schedule s = g.schedule(unit_machine());
  EXPECT_NEAR(s.makespan, 11e-6, 1e-12);
  EXPECT_NEAR(s.ops[last].start, 8e-6, 1e-12);
  // the critical path runs through the link, not the host
  ASSERT_EQ(s.critical_path.size(), 2u);
  EXPECT_EQ(s.critical_path[0], l);
  EXPECT_EQ(s.critical_path[1], last);
}

TEST(StepGraph, PrefetchHiddenBehindComputeUntilItIsLonger) {
  // The SpeContext pattern: copies for layers 2 and 3 issued at t=0 on the link; the GPU runs
  // layers 0..3 (4 us each); layer l's attention waits for its copy.
  for (double copy_us : {1.0, 6.0, 20.0}) {
    StepGraph g;
    OpId c2 = g.add(link(copy_us));
    OpId c3 = g.add(link(copy_us));
    OpId x = g.add(gpu(4));
    x = g.add(gpu(4), {x});
    x = g.add(gpu(4), {x, c2});
    g.add(gpu(4), {x, c3});
    // Copies end at c, 2c; layer 2 starts at max(8, c), layer 3 at max(end2, 2c).
    const double l2_start = std::max(8.0, copy_us), l3_start = std::max(l2_start + 4, 2 * copy_us);
    EXPECT_NEAR(g.schedule(unit_machine()).makespan, (l3_start + 4) * 1e-6, 1e-12) << copy_us;
  }
}

TEST(StepGraph, StreamOrderHoldsEvenWithoutDataDependencies) {
  // Two GPU ops with no data edge still run one after the other on the compute stream.
  StepGraph g;
  OpId a = g.add(gpu(5));
  OpId b = g.add(gpu(5));
  const Schedule s = g.schedule(unit_machine());
  EXPECT_NEAR(s.ops[b].start, s.ops[a].end, 1e-15);
}

TEST(StepGraph, BusyTimePerResource) {
  StepGraph g;
  g.add(gpu(5));
  g.add(link(2));
  g.add(link(3));
  const Schedule s = g.schedule(unit_machine());
  EXPECT_NEAR(s.busy_seconds[static_cast<int>(Resource::Gpu)], 5e-6, 1e-12);
  EXPECT_NEAR(s.busy_seconds[static_cast<int>(Resource::H2D)], 5e-6, 1e-12);
}

TEST(StepGraph, DependencyOnAFutureOpIsRejected) {
  StepGraph g;
  g.add(gpu(1));
  EXPECT_THROW(g.add(gpu(1), {5}), std::logic_error);
}

TEST(StepGraph, ChromeTraceHasOneEventPerOpAndMarksTheCriticalPath) {
  StepGraph g;
  OpId a = g.add(gpu(5));
  g.add(link(1));
  const Schedule s = g.schedule(unit_machine());
  const auto trace = chrome_trace(g, s, "t");
  int complete = 0, critical = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    ++complete;
    if (e["args"]["critical"].get<bool>()) {
      ++critical;
      EXPECT_EQ(e["tid"], static_cast<int>(Resource::Gpu));
      EXPECT_NEAR(e["dur"].get<double>(), 5.0, 1e-9);  // microseconds
    }
  }
  EXPECT_EQ(complete, 2);
  EXPECT_EQ(critical, 1);
  (void)a;
}

}  // namespace
}  // namespace specontext
