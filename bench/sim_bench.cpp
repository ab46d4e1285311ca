// Google Benchmark micro-benchmarks of the simulator core: what a sweep spends its time on.
#include <benchmark/benchmark.h>

#include "sim/scenario_loader.hpp"
#include "sim/simulator.hpp"

namespace specontext {
namespace {

Scenario bench_scenario(const std::string& system, const std::string& model, long long requests) {
  ScenarioSpec spec;
  spec.hardware = "a800-80g";
  spec.model = model;
  spec.system = system;
  spec.workload = {2048, 32768, requests, 2048};
  return make_scenario(spec);
}

void BM_BuildAndScheduleStep(benchmark::State& state, const std::string& system, const std::string& model) {
  const Scenario sc = bench_scenario(system, model, 8);
  const auto sys = make_system(system);
  std::size_t ops = 0;
  for (auto _ : state) {
    StepGraph g;
    sys->build_decode_step(g, sc, 20000);
    benchmark::DoNotOptimize(g.schedule(sc.hw).makespan);
    ops = g.size();
  }
  state.counters["ops_per_step"] = static_cast<double>(ops);
  state.counters["ops_per_s"] = benchmark::Counter(static_cast<double>(ops) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_BuildAndScheduleStep, specontext_8b, std::string("specontext"), std::string("deepseek-r1-distill-llama-8b"));
BENCHMARK_CAPTURE(BM_BuildAndScheduleStep, specontext_70b, std::string("specontext"), std::string("llama-3.1-70b"));
BENCHMARK_CAPTURE(BM_BuildAndScheduleStep, shadowkv_8b, std::string("shadowkv"), std::string("deepseek-r1-distill-llama-8b"));

void BM_SimulateGeneration(benchmark::State& state) {
  const Scenario sc = bench_scenario("specontext", "deepseek-r1-distill-llama-8b", 32);
  const auto sys = make_system("specontext");
  for (auto _ : state) benchmark::DoNotOptimize(simulate(sc, *sys).throughput_tok_s);
}
BENCHMARK(BM_SimulateGeneration)->Unit(benchmark::kMillisecond);

void BM_BestRequests(benchmark::State& state) {
  const Scenario sc = bench_scenario("specontext", "deepseek-r1-distill-llama-8b", 1);
  const auto sys = make_system("specontext");
  for (auto _ : state) benchmark::DoNotOptimize(simulate_best_requests(sc, *sys).requests);
}
BENCHMARK(BM_BestRequests)->Unit(benchmark::kMillisecond);

void BM_Thresholds(benchmark::State& state) {
  const Scenario sc = bench_scenario("specontext", "llama-3.1-70b", 32);
  for (auto _ : state) benchmark::DoNotOptimize(sc.memory_model().thresholds().back());
}
BENCHMARK(BM_Thresholds);

}  // namespace
}  // namespace specontext

BENCHMARK_MAIN();
