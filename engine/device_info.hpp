#pragma once
// The CUDA devices this process sees, and whether this binary's kernels run on them.
// Built without CUDA, the list is empty and `cuda_built` is false.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace specontext {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int sm_count = 0;
  double memory_bytes = 0;
  double free_bytes = 0;
  double peak_memory_bandwidth_Bps = 0;  // 2 x memory clock x bus width (DDR)
  bool kernel_runs = false;              // a test kernel launched and wrote the expected result
  std::string kernel_error;              // why not, e.g. no code for this architecture
};

struct DeviceReport {
  bool cuda_built = false;
  std::string built_architectures;  // CMAKE_CUDA_ARCHITECTURES at build time
  int driver_version = 0;           // CUDA version the driver supports, e.g. 13000
  std::string driver_release;       // the kernel module's release, e.g. "580.159.04" (Linux)
  int runtime_version = 0;
  std::string error;                // why no device could be queried
  std::vector<DeviceInfo> devices;
};

DeviceReport query_devices();
// The NVIDIA kernel module's release from /proc/driver/nvidia/version ("" where absent).
std::string nvidia_driver_release(const std::string& proc_file = "/proc/driver/nvidia/version");
nlohmann::json to_json(const DeviceReport& r);

}  // namespace specontext
