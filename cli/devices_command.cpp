// specontext devices: the CUDA devices, the toolkit and driver, and whether our kernels run.
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "engine/device_info.hpp"

namespace specontext::cli {

void add_devices_command(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("devices", "list CUDA devices and check that this build's kernels run on them");
  cmd->add_flag("--json", *json, "print JSON instead of a table");
  cmd->callback([json]() {
    const DeviceReport r = query_devices();
    if (*json) {
      std::cout << to_json(r).dump(2) << "\n";
    } else {
      std::cout << "CUDA build: " << (r.cuda_built ? "yes, sm_" + r.built_architectures : "no") << "; driver " << (r.driver_release.empty() ? "?" : r.driver_release) << " (CUDA " << r.driver_version << ")"
                << ", runtime " << r.runtime_version << "\n";
      if (!r.error.empty()) std::cout << "  no devices: " << r.error << "\n";
      for (const auto& d : r.devices)
        std::cout << "  [" << d.index << "] " << d.name << ", sm_" << d.compute_major << d.compute_minor << ", " << d.sm_count << " SMs, "
                  << gb(d.memory_bytes) << " (" << gb(d.free_bytes) << " free), peak " << fixed(d.peak_memory_bandwidth_Bps / 1e9, 0)
                  << " GB/s; test kernel: " << (d.kernel_runs ? "ok" : d.kernel_error) << "\n";
    }
    // A device whose kernels cannot run is an error the caller must see.
    for (const auto& d : r.devices)
      if (!d.kernel_runs) throw std::runtime_error("device " + std::to_string(d.index) + ": " + d.kernel_error);
  });
}

}  // namespace specontext::cli
