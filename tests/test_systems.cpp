// The system models: the fit to the H200's measured Hugging Face steps, hand-counted
// traffic, and properties every model must keep.
#include <gtest/gtest.h>

#include <cmath>

#include "sim/simulator.hpp"
#include "tests/scenario_fixture.hpp"

namespace specontext {
namespace {

using testing::scenario;

double step_ms(const Scenario& sc, const std::string& system, long long S) {
  StepGraph g;
  make_system(system)->build_decode_step(g, sc, S);
  return g.schedule(sc.hw).makespan * 1e3;
}

double gpu_busy_ms(const Scenario& sc, const std::string& system, long long S) {
  StepGraph g;
  make_system(system)->build_decode_step(g, sc, S);
  return g.schedule(sc.hw).busy_seconds[static_cast<int>(Resource::Gpu)] * 1e3;
}

double step_h2d(const Scenario& sc, long long S) {
  StepGraph g;
  make_system("specontext")->build_decode_step(g, sc, S);
  return g.total_link_bytes(Resource::H2D);
}

// H200.md "Baseline: Hugging Face transformers decode step (measured)", eager rows.
TEST(Systems, HfEagerMatchesTheH200Measurements) {
  const struct { long long R, S; double ms; } rows[] = {{1, 2048, 45.2}, {1, 32768, 45.3}, {4, 2048, 46.3}, {4, 32768, 127.2},
                                                        {16, 16384, 238.5}, {32, 16384, 465.4}};
  for (const auto& r : rows) {
    const Scenario sc = scenario("hf-eager", "h200", "llama-3.1-8b", 1024, 16, r.R);
    EXPECT_NEAR(step_ms(sc, "hf-eager", r.S) / r.ms, 1.0, 0.10) << "R=" << r.R << " S=" << r.S;
  }
}

// H200.md: the sdpa path's steps are flat near 100 ms at R = 4 over S = 2K..34K (host-bound).
TEST(Systems, HfFlashIsHostBoundAtFewRequests) {
  const Scenario sc = scenario("hf-flash", "h200", "llama-3.1-8b", 1024, 16, 4);
  for (long long S : {2048, 8192, 16384, 24576, 34816}) EXPECT_NEAR(step_ms(sc, "hf-flash", S) / 102.0, 1.0, 0.15) << S;
}

// The asynchronous prefetch (c2) slows the forward it runs beside: the GPU stream's busy time grows
// by gather_gpu_slowdown x the gathers' link time, and not at all without offloaded layers.
TEST(Systems, SpeContextPrefetchContendsWithTheForward) {
  Scenario sc = scenario("specontext", "h200", "llama-3.1-8b", 2048, 32768, 32, 2048, "c1,c2");
  sc.offloaded_layers = 8;
  const long long S = 16384;
  StepGraph g;
  make_system("specontext")->build_decode_step(g, sc, S);
  double link_s = 0;
  for (OpId i = 0; i < g.size(); ++i)
    if (g.op(i).name == "prefetch") link_s += op_time(g.op(i), sc.hw).seconds - g.op(i).launches * sc.hw.kernel_gap_s;
  ASSERT_GT(link_s, 0.0);
  Scenario calm = sc;
  calm.hw.gather_gpu_slowdown = 1e-9;
  EXPECT_NEAR(gpu_busy_ms(sc, "specontext", S) - gpu_busy_ms(calm, "specontext", S), sc.hw.gather_gpu_slowdown * link_s * 1e3, 1e-6);
  Scenario resident = sc;
  resident.offloaded_layers = 0;
  Scenario resident_calm = resident;
  resident_calm.hw.gather_gpu_slowdown = 1e-9;
  EXPECT_DOUBLE_EQ(gpu_busy_ms(resident, "specontext", S), gpu_busy_ms(resident_calm, "specontext", S));
}

TEST(Systems, SpeContextMovesOnlyTheChangedRows) {
  // 4 requests on an A800 at S = 30K: the plan has offloaded some layers.
  Scenario sc = scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32);
  const long long S = 30000;
  const long long cpu = sc.memory_model().cpu_layers_at(S);
  ASSERT_GT(cpu, 0);
  // PAPER.md §3.3: R x L_CPU x H x |S_now - S_last| x D x 2 (K, V) x 2 bytes, |S_now - S_last| = (1 - 0.8) B,
  // plus nothing else on the H2D link.
  const double by_hand = 32.0 * cpu * 8 * std::ceil(0.2 * 2048) * 128 * 2 * 2;
  EXPECT_NEAR(step_h2d(sc, S), by_hand, 1.0);
  // c1 alone loads the whole budget, synchronously, for every layer (static placement: all on host).
  Scenario c1 = scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32, 2048, "c1");
  EXPECT_NEAR(step_h2d(c1, S), 32.0 * 32 * 8 * 2048 * 128 * 2 * 2, 1.0);
}

TEST(Systems, EachComponentMakesTheStepFaster) {
  const long long S = 30000;
  const double c1 = step_ms(scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32, 2048, "c1"), "specontext", S);
  const double c12 = step_ms(scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32, 2048, "c1,c2"), "specontext", S);
  const double c123 = step_ms(scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32), "specontext", S);
  EXPECT_LT(c12, c1);
  EXPECT_LE(c123, c12);
}

TEST(Systems, BiggerBudgetNeverMovesFewerBytes) {
  double previous = -1;
  for (long long B : {256, 512, 1024, 2048, 4096}) {
    const Scenario sc = scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 16, B);
    const double bytes = step_h2d(sc, 30000);
    EXPECT_GE(bytes, previous) << "B=" << B;
    previous = bytes;
  }
}

TEST(Systems, HigherOverlapMovesFewerBytes) {
  Scenario sc = scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, 32);
  sc.overlap = 0.5;
  const double low = step_h2d(sc, 30000);
  sc.overlap = 0.9;
  EXPECT_LT(step_h2d(sc, 30000), low);
}

TEST(Systems, MoreBandwidthIsNeverSlower) {
  for (const auto& system : system_names()) {
    for (long long R : {1LL}) {
      Scenario sc = scenario(system, "a800-80g", "deepseek-r1-distill-llama-8b", 16384, 2048, R, 2048);
      for (double Hardware::*field : {&Hardware::hbm_bandwidth_Bps, &Hardware::h2d_bandwidth_Bps, &Hardware::dense_bf16_flops}) {
        const double before = step_ms(sc, system, 17000);
        Scenario faster = sc;
        faster.hw.*field *= 2;
        EXPECT_LE(step_ms(faster, system, 17000), before * (1 + 1e-12)) << system;
      }
    }
  }
}

TEST(Systems, MoreMemoryNeverMakesARunInfeasible) {
  for (const auto& system : system_names()) {
    for (long long R : {1, 8, 32}) {
      Scenario sc = scenario(system, "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 16384, R);
      const bool small = make_system(system)->feasibility(sc).feasible;
      sc.gpu_memory_bytes *= 2;
      const bool big = make_system(system)->feasibility(sc).feasible;
      EXPECT_TRUE(!small || big) << system << " R=" << R;
    }
  }
}

TEST(Systems, MoreMemoryIsNeverSlower) {
  // With adaptive placement, more GPU memory keeps more layers on the GPU: fewer bytes to move.
  for (long long R : {8, 32}) {
    Scenario sc = scenario("specontext", "a800-80g", "deepseek-r1-distill-llama-8b", 2048, 32768, R);
    const auto sys = make_system("specontext");
    const SimResult small = simulate(sc, *sys);
    sc.gpu_memory_bytes *= 1.25;
    const SimResult big = simulate(sc, *sys);
    ASSERT_TRUE(small.feasible && big.feasible);
    EXPECT_GE(big.throughput_tok_s, small.throughput_tok_s) << "R=" << R;
    EXPECT_LE(big.h2d_bytes_per_step, small.h2d_bytes_per_step) << "R=" << R;
  }
}

TEST(Systems, SingleRequestSystemsRefuseBatches) {
  for (const char* system : {"quest", "clusterkv"}) {
    const Scenario sc = scenario(system, "h200", "llama-3.1-8b", 2048, 128, 2);
    const Feasibility f = make_system(system)->feasibility(sc);
    EXPECT_FALSE(f.feasible);
    EXPECT_NE(f.reason.find("at most 1"), std::string::npos) << f.reason;
  }
}

TEST(Systems, PerLayerRetrievalPaysForGeneratedTokens) {
  // PAPER.md §1.1 problem 2: prompt-only preprocessing; a long generation makes Quest's
  // attention grow with the generated tokens while SpeContext's stays at B.
  const Scenario q = scenario("quest", "h200", "llama-3.1-8b", 2048, 32768, 1);
  const Scenario s = scenario("specontext", "h200", "llama-3.1-8b", 2048, 32768, 1);
  // (GPU time: at one request both steps are bound by the host's dispatch.)
  const double quest_growth = gpu_busy_ms(q, "quest", 34000) - gpu_busy_ms(q, "quest", 4000);
  const double specontext_growth = gpu_busy_ms(s, "specontext", 34000) - gpu_busy_ms(s, "specontext", 4000);
  EXPECT_GT(quest_growth, 0.5);  // ~30K more tokens x 30 sparse layers x 4 KiB at HBM speed
  EXPECT_GT(quest_growth, 4 * specontext_growth);
}

TEST(Systems, EagerPrefillOfLongPromptsDoesNotFit) {
  // Eager attention materialises R x heads x S x S scores: a 32K prompt needs ~300 GB.
  const Scenario sc = scenario("hf-eager", "h200", "llama-3.1-8b", 32768, 16, 1);
  const Feasibility f = make_system("hf-eager")->feasibility(sc);
  EXPECT_FALSE(f.feasible);
  EXPECT_NE(f.reason.find("prefill"), std::string::npos);
}

TEST(Systems, EdgeCapOffloadsTheOneBModel) {
  // The paper's edge setup: Reasoning-Llama-3.2-1B under a 4 GB cap on an RTX 4060 Laptop.
  Scenario sc = scenario("specontext", "rtx4060-laptop", "reasoning-llama-3.2-1b", 2048, 16384, 1);
  sc.gpu_memory_bytes = 4e9;
  const MemoryUse end = make_system("specontext")->memory_at(sc, sc.final_length());
  EXPECT_LT(end.gpu_layers, sc.model.layers);
  EXPECT_LE(end.gpu_bytes, 4e9);
}

}  // namespace
}  // namespace specontext
