#pragma once
// A GPU with its host: the numbers the cost and memory models need.
// Loaded from configs/hardware/*.json, where every number carries its source.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace specontext {

struct Hardware {
  std::string name;
  std::string description;
  std::string origin;  // file it was read from

  double gpu_memory_bytes = 0;
  double hbm_bandwidth_Bps = 0;
  double dense_bf16_flops = 0;
  double sm_count = 0;
  double h2d_bandwidth_Bps = 0;  // pinned, large copies
  double d2h_bandwidth_Bps = 0;
  double host_memory_bytes = 0;
  double host_memory_bandwidth_Bps = 0;
  double kernel_launch_overhead_s = 0;  // host CPU time to launch one kernel
  double kernel_gap_s = 0;              // GPU idle between two dependent kernels
  double hbm_efficiency = 0;            // achievable fraction of hbm_bandwidth_Bps
  double compute_efficiency = 0;        // achievable fraction of dense_bf16_flops
  // Fraction of the streaming rate (hbm_efficiency) that reads of KV rows through index lists reach:
  // sparse attention fetches each selected token's K and V rows (256 B per KV head at head_dim 128)
  // at scattered positions instead of streaming the cache.
  double hbm_gather_efficiency = 1;
  // (row bytes, fraction of h2d_bandwidth_Bps) for gathers of random rows from pinned memory.
  std::vector<std::pair<double, double>> gather_row_efficiency;
  // Optional (empty: no such limit). (host buffer bytes, seconds per row): the least time one row of
  // a gather from mapped pinned host memory takes, by the size of the buffer the rows are spread
  // over. The GPU translates every row's host address; past its translation reach each row pays
  // for a page walk, so small rows from a large buffer are bound by rows, not bytes (measured by
  // bench/gather_footprint: 512 B rows fall from ~50 to ~16 GB/s as the buffer grows to 48 GiB, 2 KiB
  // rows stay at the byte rate).
  std::vector<std::pair<double, double>> gather_row_seconds_by_footprint;
  // Optional (default 1): the part of that floor the engine's own gathers pay. The curve comes from
  // uniformly random rows; the engine's rows cluster by request and head, so they need fewer page
  // walks than the micro-benchmark's; `specontext calibrate` fits the factor to measured steps.
  double gather_row_floor_scale = 1;
  // Such a gather is a kernel reading mapped host memory (zero-copy): it holds SMs and writes HBM,
  // and GPU work running beside it loses this fraction of its throughput for the gather's duration.
  double gather_gpu_slowdown = 0;

  std::map<std::string, std::string> sources;  // field -> source text

  // Fraction of the pinned copy rate reached by a gather of rows of this size;
  // log-linear between the measured points, flat outside them. row_bytes <= 0 means
  // one contiguous copy (efficiency 1).
  double gather_efficiency(double row_bytes) const;
  // The least seconds per row of a gather from a host buffer of this size: log-linear in the size
  // between the measured points, flat outside them, times gather_row_floor_scale; 0 where no curve
  // is given or footprint <= 0.
  double gather_row_floor_s(double footprint_bytes) const;
};

Hardware parse_hardware(const nlohmann::json& j, const std::string& origin);
Hardware load_hardware(const std::filesystem::path& path);

// The hardware file of `dir` (configs/hardware/) that describes the CUDA device named `device_name`
// (cudaDeviceProp::name, e.g. "NVIDIA H100 80GB HBM3"): the file whose name holds the device's
// model token (H200, H100, GH200, A100, A800, RTX 4090, ...) and agrees on the form factor (a PCIe
// card matches only a file that says PCIe), calibrated files left out. nullopt where none does, or
// more than one.
std::optional<std::filesystem::path> hardware_for_device(const std::string& device_name, const std::filesystem::path& dir);

// Applies {"field": value, ...} overrides (experiment what-ifs such as another host link).
Hardware with_overrides(Hardware hw, const nlohmann::json& overrides, const std::string& origin);

}  // namespace specontext
