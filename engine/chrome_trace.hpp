#pragma once
// The engine's measured GPU timeline as plain records (what CUPTI reports; the collection is
// engine/cupti_timeline.hpp) and its two views: a Chrome trace (DESIGN.md: `traceEvents`, µs, so
// that Perfetto opens it beside the simulator's predicted step, sim/step_graph.hpp) and the
// per-step breakdown by NVTX range. CPU only: both are built and tested without a GPU.
//
// NVTX ranges are host time and GPU work runs later than it is launched, so GPU work is put in
// the range that contains its *launch* (the runtime/driver call with the same correlation id),
// as Nsight Systems projects NVTX ranges onto the GPU.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace specontext {

enum class CopyKind { Unknown, HostToDevice, DeviceToHost, DeviceToDevice, HostToHost, PeerToPeer, Array };
enum class MemoryKind { Unknown, Pageable, Pinned, Device, Managed, Array };
std::string to_string(CopyKind kind);    // "HtoD", "DtoH", "DtoD", "HtoH", "PtoP", "array", "unknown"
std::string to_string(MemoryKind kind);  // "pageable", "pinned", "device", "managed", "array", "unknown"

// The host call that issued a GPU activity (found through the correlation id); unknown when the
// API records were not collected or were dropped.
struct LaunchSite {
  bool known = false;
  std::uint32_t thread = 0;  // system thread id, as NVTX ranges carry it
  std::uint64_t ns = 0;      // the call's start
};

struct KernelRecord {
  std::string name;  // demangled
  std::uint32_t device = 0, stream = 0, correlation = 0, graph = 0;  // graph: 0 unless launched from a CUDA graph
  std::uint64_t start_ns = 0, end_ns = 0;
  std::array<int, 3> grid{}, block{};
  int registers_per_thread = 0;
  std::int64_t static_shared_bytes = 0, dynamic_shared_bytes = 0;
  LaunchSite launch;
};

struct MemcpyRecord {
  CopyKind kind = CopyKind::Unknown;
  MemoryKind src = MemoryKind::Unknown, dst = MemoryKind::Unknown;
  std::uint64_t bytes = 0;
  std::uint32_t device = 0, stream = 0, correlation = 0, graph = 0;
  std::uint64_t start_ns = 0, end_ns = 0;
  LaunchSite launch;
};

struct MemsetRecord {
  MemoryKind memory = MemoryKind::Unknown;
  std::uint64_t bytes = 0;
  std::uint32_t value = 0, device = 0, stream = 0, correlation = 0, graph = 0;
  std::uint64_t start_ns = 0, end_ns = 0;
  LaunchSite launch;
};

// An NVTX range (push/pop or start/end) on a host thread.
struct RangeRecord {
  std::string name, domain;
  std::uint32_t thread = 0;
  std::uint64_t start_ns = 0, end_ns = 0;
};

// CUPTI reports a range as two markers sharing an id: the start (with the name) and the end.
struct MarkerRecord {
  enum class Phase { Start, End, Instant };
  Phase phase = Phase::Instant;
  std::uint32_t id = 0, thread = 0;
  std::uint64_t ns = 0;
  std::string name, domain;  // the start's; empty on an end
};

// A runtime or driver API call: where its correlation id's GPU work was launched from.
struct ApiRecord {
  std::uint32_t correlation = 0, thread = 0;
  std::uint64_t start_ns = 0, end_ns = 0;
};

struct GpuTimeline {
  std::vector<KernelRecord> kernels;
  std::vector<MemcpyRecord> memcpys;
  std::vector<MemsetRecord> memsets;
  std::vector<RangeRecord> ranges;
  std::uint64_t dropped_records = 0;     // CUPTI ran out of buffer space
  std::uint64_t incomplete_records = 0;  // GPU records without timestamps, left out
  std::uint64_t unpaired_markers = 0;    // a range open at start or at stop
};

// Ranges from start/end markers paired by id; with a non-empty `domain`, only that domain's.
// Markers of one id that do not pair are counted in `unpaired` (when given).
std::vector<RangeRecord> pair_markers(const std::vector<MarkerRecord>& markers, const std::string& domain, std::uint64_t* unpaired = nullptr);

// Sets every kernel's, copy's and memset's launch site from the API call with its correlation id.
void attach_launch_sites(GpuTimeline& timeline, const std::vector<ApiRecord>& calls);

// The readable form of a mangled C++ name (CUPTI gives kernels' mangled names); the name itself
// when it is not a mangled one.
std::string demangle(const std::string& name);

// Chrome trace: one process "GPU"; a thread per (device, stream) holding its kernels, copies and
// memsets (tid = stream id on device 0); a thread per host thread holding its NVTX ranges as
// complete ("X") events, which viewers nest by time. Times in µs from the first event. Each GPU
// event's args carry the NVTX path of its launch ("step 3/layer 0/attention").
nlohmann::json chrome_trace(const GpuTimeline& timeline);

// Per `step N` range (a range named "step" and a number): the GPU work launched inside it.
//   {"steps": [{"step", "host_ms", "gpu_span_ms", "kernels", "kernel_ms", "kernel_ms_by_range": {...},
//               "h2d_bytes", "h2d_ms", "h2d_gbps", "d2h_bytes", "d2h_ms", "memset_bytes"}...],
//    "range_names": [...], "outside_steps": {"kernels", "kernel_ms", "h2d_bytes"}, "dropped_records", ...}
// kernel_ms_by_range keys are the innermost range below the step, its number dropped ("layer 3"
// -> "layer": a layer's work outside attention and mlp); "step" is work directly in the step
// (and a CUDA graph's whole replay, whose launch is one call). Kernel times are summed, so kernels
// overlapping on two streams count twice. h2d_gbps = H2D copy bytes / the time any H2D copy was
// in flight (the union of their intervals); copies only: zero-copy kernel reads of pinned memory
// (the elastic gather) are kernel time under "prefetch".
nlohmann::json step_breakdown(const GpuTimeline& timeline);

// The breakdown as a Markdown table (one row per step, a column per range name).
std::string step_breakdown_table(const nlohmann::json& breakdown);

}  // namespace specontext
