#include "sim/op_cost.hpp"

#include <algorithm>

namespace specontext {

const char* to_string(Resource r) {
  switch (r) {
    case Resource::Host: return "host CPU";
    case Resource::Gpu: return "GPU compute";
    case Resource::H2D: return "host link H2D";
    case Resource::D2H: return "host link D2H";
  }
  return "?";
}

namespace {

// Seconds the host link needs for `bytes` in rows of `row_bytes` (0: one contiguous copy) spread over
// a host buffer of `footprint_bytes` (0: no per-row floor).
double link_seconds(Resource r, double bytes, double row_bytes, double footprint_bytes, double efficiency, const Hardware& hw) {
  const double rate = (r == Resource::D2H ? hw.d2h_bandwidth_Bps : hw.h2d_bandwidth_Bps) * hw.gather_efficiency(row_bytes) * efficiency;
  // The host side of a transfer cannot beat host DRAM either.
  const double by_bytes = bytes / std::min(rate, hw.host_memory_bandwidth_Bps);
  // Nor can a gather of rows beat the GPU's translation of their host addresses.
  const double by_rows = row_bytes > 0 ? bytes / row_bytes * hw.gather_row_floor_s(footprint_bytes) : 0.0;
  return std::max(by_bytes, by_rows);
}

}  // namespace

OpTime op_time(const Op& op, const Hardware& hw) {
  OpTime t;
  switch (op.resource) {
    case Resource::Gpu: {
      const double compute = op.flops / (hw.dense_bf16_flops * hw.compute_efficiency * op.efficiency);
      const double memory =
          op.hbm_bytes / (hw.hbm_bandwidth_Bps * hw.hbm_efficiency * op.efficiency * (op.indexed_reads ? hw.hbm_gather_efficiency : 1.0));
      const double overhead = op.launches * hw.kernel_gap_s;
      const double contention =
          op.concurrent_gather_bytes > 0 ? hw.gather_gpu_slowdown * link_seconds(Resource::H2D, op.concurrent_gather_bytes, op.link_row_bytes, op.link_footprint_bytes, 1.0, hw) : 0;
      t.seconds = std::max(compute, memory) + overhead + contention;
      t.bound = contention > std::max({compute, memory, overhead}) ? "contention"
                : overhead > std::max(compute, memory)              ? "overhead"
                : compute >= memory                                 ? "compute"
                                                                    : "hbm";
      break;
    }
    case Resource::H2D:
    case Resource::D2H: {
      const double link = link_seconds(op.resource, op.link_bytes, op.link_row_bytes, op.link_footprint_bytes, op.efficiency, hw);
      t.seconds = link + op.launches * hw.kernel_gap_s;
      t.bound = "link";
      break;
    }
    case Resource::Host:
      t.seconds = op.host_seconds + op.launches * hw.kernel_launch_overhead_s;
      t.bound = "host";
      break;
  }
  return t;
}

}  // namespace specontext
