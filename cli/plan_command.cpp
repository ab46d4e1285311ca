// specontext plan: the paper's memory thresholds and where layers live as S grows.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/scenario_flags.hpp"
#include "sim/plan.hpp"

namespace specontext::cli {

void add_plan_command(CLI::App& app) {
  auto flags = std::make_shared<ScenarioFlags>();
  CLI::App* cmd = app.add_subcommand("plan", "memory thresholds S_0^T..S_L^T and layer placement over S (paper Eq. 6-8, Alg. 1-2)");
  flags->add_to(*cmd, true);
  cmd->callback([flags]() {
    ScenarioSpec spec = flags->spec();
    spec.system = "specontext";
    spec.workload.input = 1;
    spec.workload.output = 1;
    const Scenario sc = make_scenario(spec);
    const Plan p = make_plan(sc);
    if (flags->json) {
      std::cout << to_json(p, sc).dump(2) << "\n";
      return;
    }
    const MemoryModel mm = sc.memory_model();
    std::cout << "memory plan: " << sc.model.name << " on " << sc.hw.name << ", R=" << p.inputs.requests << ", B=" << p.inputs.budget << "\n"
              << "  Mem_GPU " << gb(p.inputs.gpu_memory_bytes) << ", M_O " << gb(p.inputs.model_bytes) << ", M_D " << gb(p.inputs.draft_bytes)
              << " (" << to_string(sc.draft_part) << "), 1.3(M_O+M_D) " << gb(mm.weights_and_runtime()) << "\n"
              << "  KV per token, all layers on GPU: " << mb(mm.kv_unit() * (static_cast<double>(p.inputs.layers) + 1 + p.inputs.alpha))
              << "; buffer per offloaded layer: " << mb(mm.buffer_per_offloaded_layer()) << " (" << to_string(p.inputs.buffer_term) << ")\n\n";
    std::cout << "   i   S_i^T\n";
    for (std::size_t i = 0; i < p.thresholds.size(); ++i) std::cout << "  " << (i < 10 ? " " : "") << i << "   " << p.thresholds[i] << "\n";
    std::cout << "\n  from S      to S        GPU layers  host layers\n";
    for (const auto& s : p.segments)
      std::cout << "  " << s.from << std::string(12 - std::min<std::size_t>(11, std::to_string(s.from).size()), ' ') << s.to
                << std::string(12 - std::min<std::size_t>(11, std::to_string(s.to).size()), ' ') << s.gpu_layers << std::string(11, ' ')
                << s.cpu_layers << "\n";
    if (p.max_length <= 0) std::cout << "  the weights alone do not fit in GPU memory\n";
    else std::cout << "  from S = " << p.max_length << " nothing fits, even with every layer on the host\n";
  });
}

}  // namespace specontext::cli
