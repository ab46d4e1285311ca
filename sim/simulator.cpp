#include "sim/simulator.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace specontext {
namespace {

struct StepCost {
  double seconds = 0;
  double h2d_bytes = 0;
};

// Evaluates steps once per context length and remembers them as samples.
class StepEvaluator {
 public:
  StepEvaluator(const Scenario& sc, const SystemModel& system) : sc_(sc), system_(system) {}

  StepCost operator()(long long S) {
    auto it = cache_.find(S);
    if (it == cache_.end()) it = cache_.emplace(S, decode_step(sc_, system_, S)).first;
    return {it->second.step_s, it->second.h2d_bytes};
  }

  std::vector<StepSample> samples() const {
    std::vector<StepSample> out;
    for (const auto& [S, s] : cache_) out.push_back(s);
    return out;
  }

 private:
  const Scenario& sc_;
  const SystemModel& system_;
  std::map<long long, StepSample> cache_;
};

struct Sum {
  double seconds = 0;
  double h2d_bytes = 0;
  double error = 0;
};

// Sum of f(S) for S in [a, b] (inclusive): trapezoid over [a, b] plus the half end points
// (Euler-Maclaurin), refined by doubling the intervals.
Sum sum_steps(StepEvaluator& f, long long a, long long b, double rel_tol) {
  Sum out;
  const long long span = b - a;
  if (span <= 16) {  // short pieces: every step exactly
    for (long long S = a; S <= b; ++S) {
      StepCost c = f(S);
      out.seconds += c.seconds;
      out.h2d_bytes += c.h2d_bytes;
    }
    return out;
  }
  auto trapezoid = [&](long long n, double& h2d) {
    const double h = static_cast<double>(span) / static_cast<double>(n);
    double t = 0;
    h2d = 0;
    for (long long i = 0; i <= n; ++i) {
      const long long S = a + static_cast<long long>(std::llround(static_cast<double>(i) * h));
      const double w = (i == 0 || i == n) ? 0.5 : 1.0;
      StepCost c = f(S);
      t += w * c.seconds;
      h2d += w * c.h2d_bytes;
    }
    return t * h;
  };
  long long n = 4;
  double h2d_prev = 0, h2d = 0;
  double prev = trapezoid(n, h2d_prev);
  double cur = prev;
  double err = 0;
  while (true) {
    n *= 2;
    if (n >= span) {  // as many intervals as steps: the trapezoid is now exact on the grid
      n = span;
      cur = trapezoid(n, h2d);
      err = 0;
      break;
    }
    cur = trapezoid(n, h2d);
    err = std::abs(cur - prev) / 3.0;  // Richardson estimate for the trapezoid rule
    if (err <= rel_tol * std::abs(cur)) break;
    prev = cur;
  }
  const double h = static_cast<double>(span) / static_cast<double>(n);
  const StepCost fa = f(a), fb = f(b);
  out.seconds = cur + 0.5 * (fa.seconds + fb.seconds);
  out.h2d_bytes = h2d * h + 0.5 * (fa.h2d_bytes + fb.h2d_bytes);
  out.error = err;
  return out;
}

}  // namespace

StepSample decode_step(const Scenario& sc, const SystemModel& system, long long S) {
  StepGraph g;
  system.build_decode_step(g, sc, S);
  return {S, g.schedule(sc.hw).makespan, system.memory_at(sc, S).gpu_layers, g.total_link_bytes(Resource::H2D)};
}

SimResult simulate(const Scenario& sc, const SystemModel& system, const SimOptions& opt) {
  SimResult r;
  r.system = system.name();
  if (system.name() == "specontext") r.components = sc.components.str();
  r.requests = sc.workload.requests;
  const Feasibility fz = system.feasibility(sc);
  if (!fz.feasible) {
    r.reason = fz.reason;
    return r;
  }
  r.feasible = true;

  StepGraph prefill;
  system.build_prefill(prefill, sc);
  r.prefill_s = prefill.schedule(sc.hw).makespan;

  // Decode steps run at S = input .. input + output - 1 cached tokens.
  const long long first = sc.workload.input, last = sc.final_length() - 1;
  std::vector<long long> cuts = {first};
  for (long long b : system.breakpoints(sc))
    if (b > first && b <= last) cuts.push_back(b);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  cuts.push_back(last + 1);

  StepEvaluator f(sc, system);
  double error = 0, h2d = 0;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const Sum s = sum_steps(f, cuts[i], cuts[i + 1] - 1, opt.rel_tol);
    r.decode_s += s.seconds;
    h2d += s.h2d_bytes;
    error += s.error;
  }
  r.samples = f.samples();

  const double steps = static_cast<double>(sc.workload.output);
  const double tokens = steps * static_cast<double>(sc.workload.requests);
  r.mean_step_s = r.decode_s / steps;
  r.h2d_bytes_per_step = h2d / steps;
  r.integration_rel_err = r.decode_s > 0 ? error / r.decode_s : 0;
  r.decode_throughput_tok_s = tokens / r.decode_s;
  r.throughput_tok_s = tokens / (r.prefill_s + r.decode_s);

  r.peak_gpu_bytes = system.prefill_peak_gpu_bytes(sc);
  auto note_memory = [&](long long S) {
    const MemoryUse u = system.memory_at(sc, S);
    r.peak_gpu_bytes = std::max(r.peak_gpu_bytes, u.gpu_bytes);
    r.peak_host_bytes = std::max(r.peak_host_bytes, u.host_bytes);
  };
  for (long long c : cuts) {  // memory peaks just before a layer moves out, and at the end
    note_memory(c - 1 >= first ? c - 1 : c);
    note_memory(std::min(c, sc.final_length()));
  }
  return r;
}

SimResult simulate_best_requests(Scenario sc, const SystemModel& system, const SimOptions& opt) {
  static const long long ladder[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024};
  SimResult best;
  SimResult first_failure;
  bool have_best = false, have_failure = false;
  for (long long R : ladder) {
    if (R > system.max_requests(sc)) break;
    sc.workload.requests = R;
    const Feasibility fz = system.feasibility(sc);
    if (!fz.feasible) {
      if (!have_failure) {
        first_failure.system = system.name();
        first_failure.requests = R;
        first_failure.reason = fz.reason;
        have_failure = true;
      }
      break;  // memory grows with R: no larger count fits either
    }
    SimResult r = simulate(sc, system, opt);
    if (!have_best || r.throughput_tok_s > best.throughput_tok_s) {
      best = std::move(r);
      have_best = true;
    }
  }
  if (have_best) return best;
  first_failure.components = system.name() == "specontext" ? sc.components.str() : "";
  return first_failure;
}

nlohmann::json decode_step_trace(const Scenario& sc, const SystemModel& system, long long S) {
  StepGraph g;
  system.build_decode_step(g, sc, S);
  const Schedule s = g.schedule(sc.hw);
  std::string title = system.name() + (system.name() == "specontext" ? "[" + sc.components.str() + "]" : "") + " decode step, S=" +
                      std::to_string(S) + ", R=" + std::to_string(sc.workload.requests) + ", " + sc.model.name + " on " + sc.hw.name;
  return chrome_trace(g, s, title);
}

nlohmann::json to_json(const SimResult& r) {
  nlohmann::json steps = nlohmann::json::array(), layers = nlohmann::json::array();
  for (const auto& s : r.samples) {
    steps.push_back({{"S", s.S}, {"ms", s.step_s * 1e3}, {"h2d_bytes", s.h2d_bytes}});
    layers.push_back({{"S", s.S}, {"gpu_layers", s.gpu_layers}});
  }
  return {{"system", r.system},
          {"components", r.components},
          {"feasible", r.feasible},
          {"reason", r.reason},
          {"requests", r.requests},
          {"throughput_tok_s", r.throughput_tok_s},
          {"decode_throughput_tok_s", r.decode_throughput_tok_s},
          {"prefill_s", r.prefill_s},
          {"decode_s", r.decode_s},
          {"peak_gpu_bytes", r.peak_gpu_bytes},
          {"peak_host_bytes", r.peak_host_bytes},
          {"h2d_bytes_per_step", r.h2d_bytes_per_step},
          {"mean_step_ms", r.mean_step_s * 1e3},
          {"integration_rel_err", r.integration_rel_err},
          {"step_ms", steps},
          {"gpu_layers", layers}};
}

}  // namespace specontext
