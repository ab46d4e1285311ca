#include "engine/device_info.hpp"

#include <fstream>
#include <regex>

namespace specontext {

std::string nvidia_driver_release(const std::string& proc_file) {
  std::ifstream in(proc_file);
  std::string line;
  if (!std::getline(in, line)) return "";
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue ..."
  static const std::regex release(R"(Kernel Module\s+([0-9]+(\.[0-9]+)+))");
  std::smatch m;
  return std::regex_search(line, m, release) ? m[1].str() : "";
}

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
          {"driver_version", r.driver_version}, {"driver_release", r.driver_release}, {"runtime_version", r.runtime_version},
          {"error", r.error},             {"devices", devices}};
}

}  // namespace specontext
