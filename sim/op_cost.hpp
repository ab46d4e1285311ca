#pragma once
// One operation of a decode or prefill step and what it costs on a given machine.
// Its time comes from a roofline (FLOPs vs HBM bytes, each derated by an efficiency
// factor), the host link (bytes over the pinned rate, derated for gathers of small
// rows), host CPU seconds, and per-kernel overheads.
#include <string>

#include "sim/hardware.hpp"

namespace specontext {

// Resources of one machine; ops on the same resource run in the order they were issued
// (a CUDA stream, the copy engine in one direction, one host thread).
enum class Resource { Host, Gpu, H2D, D2H };
constexpr int kResourceCount = 4;
const char* to_string(Resource r);

struct Op {
  std::string name;      // e.g. "attention"
  std::string category;  // groups ops in reports: host, retrieval, select, prefetch, attention, mlp, proj, ...
  Resource resource = Resource::Gpu;
  int layer = -1;               // -1: not tied to a layer
  double flops = 0;             // GPU
  double hbm_bytes = 0;         // GPU: bytes read + written in device memory
  double link_bytes = 0;        // H2D / D2H
  double link_row_bytes = 0;    // size of the rows a gather moves; 0 = one contiguous copy
  double link_footprint_bytes = 0;  // host buffer a gather's rows are spread over (Hardware::gather_row_floor_s); 0 = none
  double host_seconds = 0;      // Host
  double launches = 0;          // kernels (Gpu: inter-kernel gaps; Host: launch cost each)
  double efficiency = 1.0;      // extra derating of this op's roofline (e.g. a poor kernel)
  // Gpu: a gather of these bytes (rows of link_row_bytes) runs on the host link beside this stream;
  // the op stands for the time the stream loses to it, hw.gather_gpu_slowdown of the gather's.
  double concurrent_gather_bytes = 0;
  bool indexed_reads = false;  // Gpu: reads KV rows through index lists (derated by hw.hbm_gather_efficiency)
};

struct OpTime {
  double seconds = 0;
  const char* bound = "";  // "compute", "hbm", "link", "host", "overhead", "contention"
};

OpTime op_time(const Op& op, const Hardware& hw);

}  // namespace specontext
