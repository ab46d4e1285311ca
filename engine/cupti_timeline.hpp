#pragma once
// The measured GPU timeline of this process, collected in-process with the CUPTI Activity API
// (CUDA builds only; engine/cupti_timeline.cu): kernels, memcpys and memsets with their device
// timestamps, the `specontext` domain's NVTX ranges (engine/nvtx.hpp), and the runtime/driver
// calls that launched the GPU work, which place each kernel in the NVTX range of its launch.
// The views (Chrome trace, per-step breakdown) are engine/chrome_trace.hpp's, from plain records.
//
// NVTX reaches CUPTI without NVTX_INJECTION64_PATH: this library defines NVTX's static-injection
// hook, which hands NVTX to libcupti once a timeline has started. NVTX binds its tool at the
// process's first NVTX call, so start a timeline before the engine's first range (before a
// backend is built): ranges opened by a process whose first NVTX call came earlier are not seen
// (nvtx_routing() says so). Under Nsight (NVTX_INJECTION64_PATH set) NVTX goes to that tool.
//
// One timeline runs at a time (CUPTI's buffers are process-wide). Not for use under nsys/ncu,
// which hold CUPTI themselves.
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/chrome_trace.hpp"

namespace specontext {

enum class NvtxRouting {
  NotBound,       // no NVTX call yet in this process
  Cupti,          // NVTX calls go to CUPTI: ranges are recorded
  BoundEarlier,   // NVTX's first call came before any timeline started: ranges are lost
  CuptiFailed,    // libcupti's NVTX initialisation failed: ranges are lost
  ExternalTool,   // NVTX_INJECTION64_PATH names a tool (Nsight); CUPTI sees ranges only if it is libcupti
};
std::string to_string(NvtxRouting routing);

class CuptiTimeline {
 public:
  // `domain`: the NVTX domain whose ranges are kept (empty: every domain).
  explicit CuptiTimeline(std::string domain = "specontext");
  ~CuptiTimeline();  // stops a running collection
  CuptiTimeline(const CuptiTimeline&) = delete;
  CuptiTimeline& operator=(const CuptiTimeline&) = delete;

  // Starts collecting. Throws std::runtime_error where there is no CUDA device, where CUPTI
  // cannot start (the message names the call), or while another timeline runs.
  void start();
  // Waits for the device, flushes CUPTI's buffers and builds the records. Idempotent.
  void stop();
  bool running() const;

  const GpuTimeline& records() const;        // after stop()
  nlohmann::json chrome_trace() const;       // engine/chrome_trace.hpp's chrome_trace(records())
  nlohmann::json summary() const;            // step_breakdown(records()) and the NVTX routing

  // Where NVTX calls of this process go (see above).
  static NvtxRouting nvtx_routing();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace specontext
