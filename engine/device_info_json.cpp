#include "engine/device_info.hpp"

namespace specontext {

nlohmann::json to_json(const DeviceReport& r) {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : r.devices)
    devices.push_back({{"index", d.index},
                       {"name", d.name},
                       {"compute_capability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor)},
                       {"sm_count", d.sm_count},
                       {"memory_bytes", d.memory_bytes},
                       {"free_bytes", d.free_bytes},
                       {"peak_memory_bandwidth_Bps", d.peak_memory_bandwidth_Bps},
                       {"kernel_runs", d.kernel_runs},
                       {"kernel_error", d.kernel_error}});
  return {{"cuda_built", r.cuda_built},   {"built_architectures", r.built_architectures},
          {"driver_version", r.driver_version}, {"runtime_version", r.runtime_version},
          {"error", r.error},             {"devices", devices}};
}

}  // namespace specontext
