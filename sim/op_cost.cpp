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

OpTime op_time(const Op& op, const Hardware& hw) {
  OpTime t;
  switch (op.resource) {
    case Resource::Gpu: {
      const double compute = op.flops / (hw.dense_bf16_flops * hw.compute_efficiency * op.efficiency);
      const double memory = op.hbm_bytes / (hw.hbm_bandwidth_Bps * hw.hbm_efficiency * op.efficiency);
      const double overhead = op.launches * hw.kernel_gap_s;
      t.seconds = std::max(compute, memory) + overhead;
      t.bound = overhead > std::max(compute, memory) ? "overhead" : compute >= memory ? "compute" : "hbm";
      break;
    }
    case Resource::H2D:
    case Resource::D2H: {
      const double rate = (op.resource == Resource::H2D ? hw.h2d_bandwidth_Bps : hw.d2h_bandwidth_Bps) *
                          hw.gather_efficiency(op.link_row_bytes) * op.efficiency;
      // The host side of a transfer cannot beat host DRAM either.
      const double link = op.link_bytes / std::min(rate, hw.host_memory_bandwidth_Bps);
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
