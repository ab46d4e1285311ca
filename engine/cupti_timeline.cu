// CUPTI Activity API collection in-process (engine/cupti_timeline.hpp). Host code only; a .cu so
// that only CUDA builds compile it (engine/CMakeLists.txt).
//
// This file must not include the NVTX headers: it defines NVTX's static-injection hook, which the
// headers declare weakly in every other file that uses NVTX (nvtx3/nvtxDetail/nvtxInit.h).
#include "engine/cupti_timeline.hpp"

#include <cuda_runtime.h>
#include <cupti.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

// What NVTX_INJECTION64_PATH=libcupti.so would load: libcupti's NVTX entry point (exported by
// libcupti, declared in no header).
extern "C" int InitializeInjectionNvtx2(const void* (*get_export_table)(std::uint32_t export_table_id));

namespace specontext {
namespace {

std::string cupti_error_text(CUptiResult result) {
  const char* name = nullptr;
  if (cuptiGetResultString(result, &name) != CUPTI_SUCCESS || !name) name = "unknown CUPTI result";
  std::string text = name;
  const char* message = nullptr;
  if (cuptiGetErrorMessage(result, &message) == CUPTI_SUCCESS && message && *message) text += std::string(" (") + message + ")";
  switch (result) {
    case CUPTI_ERROR_NOT_INITIALIZED:
      text += "; CUPTI could not initialise: is there a CUDA driver, at least as new as this libcupti?";
      break;
    case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
    case CUPTI_ERROR_NOT_COMPATIBLE:
      text += "; another profiler (nsys, ncu) may hold CUPTI: run specontext profile on its own";
      break;
    case CUPTI_ERROR_INSUFFICIENT_PRIVILEGES:
    case CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES:
      text += "; this device or driver restricts profiling";
      break;
    default:
      break;
  }
  return text;
}

}  // namespace

// Every CUPTI call is checked: the failing call, file and line go into the exception.
#define SPECONTEXT_CUPTI_CHECK(call)                                                                                  \
  do {                                                                                                                 \
    const CUptiResult specontext_cupti_result_ = (call);                                                               \
    if (specontext_cupti_result_ != CUPTI_SUCCESS)                                                                     \
      throw std::runtime_error("CUPTI error: " + cupti_error_text(specontext_cupti_result_) + " in " + #call + " at " + \
                               __FILE__ + ":" + std::to_string(__LINE__));                                             \
  } while (0)

namespace {

// ---- NVTX to CUPTI ----------------------------------------------------------------------------

using NvtxExportTableGetter = const void* (*)(std::uint32_t export_table_id);

enum NvtxState : int { kNvtxNotBound = 0, kNvtxToCupti, kNvtxBoundEarlier, kNvtxCuptiFailed };
std::atomic<bool> g_nvtx_armed{false};  // a timeline has started: NVTX may go to CUPTI
std::atomic<int> g_nvtx_state{kNvtxNotBound};

// NVTX calls this once, at the process's first NVTX call. Before any timeline started it declines
// (NVTX calls then cost nothing, as without a tool), so benchmarks that never profile do not run
// NVTX through CUPTI.
int route_nvtx(NvtxExportTableGetter get_export_table) {
  if (!g_nvtx_armed.load()) {
    g_nvtx_state = kNvtxBoundEarlier;
    return 0;
  }
  const int ok = InitializeInjectionNvtx2(get_export_table);
  g_nvtx_state = ok ? kNvtxToCupti : kNvtxCuptiFailed;
  return ok;
}

}  // namespace
}  // namespace specontext

// NVTX's static-injection hook (load sequence version 2): a strong definition of this C symbol
// replaces the weak null one the NVTX headers put in every file that uses them, and NVTX calls it
// when NVTX_INJECTION64_PATH is not set. Linked in wherever CuptiTimeline is used.
extern "C" {
int (*InitializeInjectionNvtx2_fnptr)(specontext::NvtxExportTableGetter) = &specontext::route_nvtx;
}

namespace specontext {
namespace {

// ---- activity buffers -------------------------------------------------------------------------

// Records as they arrive, before markers are paired and launches attached.
struct RawRecords {
  std::vector<KernelRecord> kernels;
  std::vector<MemcpyRecord> memcpys;
  std::vector<MemsetRecord> memsets;
  std::vector<MarkerRecord> markers;
  std::vector<ApiRecord> calls;
  std::uint64_t dropped = 0, incomplete = 0;
  bool out_of_memory = false;
};

// CUPTI's buffer callbacks are process-wide and run on CUPTI's thread or in cuptiActivityFlushAll;
// they fill the running timeline's records under this mutex. start() and stop() take it only to
// swap the sink, never across a CUPTI call (which may wait for that thread).
std::mutex g_sink_mutex;
RawRecords* g_sink = nullptr;

// Set while a timeline runs (one at a time).
std::atomic<const void*> g_running{nullptr};

constexpr std::size_t kBufferBytes = 8u << 20;  // a multiple of ACTIVITY_RECORD_ALIGNMENT

const std::vector<CUpti_ActivityKind>& collected_kinds() {
  // RUNTIME and DRIVER: the calls that launched each kernel and copy (their correlation ids), which
  // place GPU work in NVTX ranges; both, since cuBLAS may launch through the driver API.
  static const std::vector<CUpti_ActivityKind> kinds = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                                        CUPTI_ACTIVITY_KIND_MEMSET,            CUPTI_ACTIVITY_KIND_MARKER,
                                                        CUPTI_ACTIVITY_KIND_RUNTIME,           CUPTI_ACTIVITY_KIND_DRIVER};
  return kinds;
}

CopyKind copy_kind(std::uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return CopyKind::HostToDevice;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return CopyKind::DeviceToHost;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return CopyKind::DeviceToDevice;
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return CopyKind::HostToHost;
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return CopyKind::PeerToPeer;
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA: return CopyKind::Array;
    default: return CopyKind::Unknown;
  }
}

MemoryKind memory_kind(unsigned kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE: return MemoryKind::Pageable;
    case CUPTI_ACTIVITY_MEMORY_KIND_PINNED: return MemoryKind::Pinned;
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE:
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE_STATIC: return MemoryKind::Device;
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED:
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED_STATIC: return MemoryKind::Managed;
    case CUPTI_ACTIVITY_MEMORY_KIND_ARRAY: return MemoryKind::Array;
    default: return MemoryKind::Unknown;
  }
}

// Copies what a record says: CUPTI owns the strings it points to only while the buffer lives.
void take(RawRecords& out, const CUpti_Activity* record) {
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      if (k->start == 0 && k->end == 0) {  // no timestamps (CUPTI lacked device memory for them)
        ++out.incomplete;
        return;
      }
      KernelRecord r;
      r.name = k->name ? k->name : "(unnamed kernel)";  // mangled; demangled once at stop
      r.device = k->deviceId;
      r.stream = k->streamId;
      r.correlation = k->correlationId;
      r.graph = k->graphId;
      r.start_ns = k->start;
      r.end_ns = k->end;
      r.grid = {k->gridX, k->gridY, k->gridZ};
      r.block = {k->blockX, k->blockY, k->blockZ};
      r.registers_per_thread = k->registersPerThread;
      r.static_shared_bytes = k->staticSharedMemory;
      r.dynamic_shared_bytes = k->dynamicSharedMemory;
      out.kernels.push_back(std::move(r));
      return;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      if (c->start == 0 && c->end == 0) {
        ++out.incomplete;
        return;
      }
      MemcpyRecord r;
      r.kind = copy_kind(c->copyKind);
      r.src = memory_kind(c->srcKind);
      r.dst = memory_kind(c->dstKind);
      r.bytes = c->bytes;
      r.device = c->deviceId;
      r.stream = c->streamId;
      // The driver call's id; a copy issued through the runtime also carries the runtime call's.
      r.correlation = c->correlationId ? c->correlationId : c->runtimeCorrelationId;
      r.graph = c->graphId;
      r.start_ns = c->start;
      r.end_ns = c->end;
      out.memcpys.push_back(r);
      return;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      if (m->start == 0 && m->end == 0) {
        ++out.incomplete;
        return;
      }
      MemsetRecord r;
      r.memory = memory_kind(m->memoryKind);
      r.bytes = m->bytes;
      r.value = m->value;
      r.device = m->deviceId;
      r.stream = m->streamId;
      r.correlation = m->correlationId;
      r.graph = m->graphId;
      r.start_ns = m->start;
      r.end_ns = m->end;
      out.memsets.push_back(r);
      return;
    }
    case CUPTI_ACTIVITY_KIND_MARKER: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMarker2*>(record);
      MarkerRecord r;
      if (m->flags & CUPTI_ACTIVITY_FLAG_MARKER_START) r.phase = MarkerRecord::Phase::Start;
      else if (m->flags & CUPTI_ACTIVITY_FLAG_MARKER_END) r.phase = MarkerRecord::Phase::End;
      else return;  // instantaneous markers and synchronisation events: not ranges
      r.id = m->id;
      r.ns = m->timestamp;
      r.thread = m->objectKind == CUPTI_ACTIVITY_OBJECT_THREAD ? m->objectId.pt.threadId : 0;
      if (m->name) r.name = m->name;
      if (m->domain) r.domain = m->domain;
      out.markers.push_back(std::move(r));
      return;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER:
    case CUPTI_ACTIVITY_KIND_INTERNAL_LAUNCH_API: {  // a driver launch outside any API call, where CUPTI reports one
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
      out.calls.push_back({a->correlationId, a->threadId, a->start, a->end});
      return;
    }
    default:
      return;
  }
}

void CUPTIAPI buffer_requested(std::uint8_t** buffer, std::size_t* size, std::size_t* max_records) {
  // A null buffer makes CUPTI drop records, which it counts (cuptiActivityGetNumDroppedRecords).
  *buffer = static_cast<std::uint8_t*>(std::aligned_alloc(ACTIVITY_RECORD_ALIGNMENT, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, std::uint32_t stream, std::uint8_t* buffer, std::size_t, std::size_t valid) {
  std::lock_guard<std::mutex> lock(g_sink_mutex);
  RawRecords* sink = g_sink;  // null after stop: records that come late are let go
  if (sink && buffer) {
    try {
      CUpti_Activity* record = nullptr;
      CUptiResult status = CUPTI_SUCCESS;
      while ((status = cuptiActivityGetNextRecord(buffer, valid, &record)) == CUPTI_SUCCESS) take(*sink, record);
      // Anything but the end (an incomplete or unknown record) loses the rest of this buffer.
      if (status != CUPTI_ERROR_MAX_LIMIT_REACHED) ++sink->incomplete;
    } catch (...) {  // no exception may cross into CUPTI (bad_alloc is the one possible)
      sink->out_of_memory = true;
    }
  }
  std::size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(context, stream, &dropped) == CUPTI_SUCCESS && sink) sink->dropped += dropped;
  std::free(buffer);
}

void register_callbacks() {
  static std::once_flag once;
  std::call_once(once, [] {  // retried on the next start if it throws
    // Records are read through this build's cupti.h structs: a libcupti of another minor version
    // (LD_LIBRARY_PATH wins over the build's RUNPATH) may lay them out differently.
    std::uint32_t version = 0;
    SPECONTEXT_CUPTI_CHECK(cuptiGetVersion(&version));
    if (version / 100 != CUPTI_API_VERSION / 100)
      throw std::runtime_error("CUPTI: the loaded libcupti has API version " + std::to_string(version) + ", this build's cupti.h " +
                               std::to_string(CUPTI_API_VERSION) + ": run with the toolkit's libcupti (check LD_LIBRARY_PATH)");
    SPECONTEXT_CUPTI_CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    // System thread ids in marker and API records alike, so that launches meet their ranges.
    SPECONTEXT_CUPTI_CHECK(cuptiSetThreadIdType(CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM));
  });
}

}  // namespace

std::string to_string(NvtxRouting routing) {
  switch (routing) {
    case NvtxRouting::NotBound: return "not bound (no NVTX call yet)";
    case NvtxRouting::Cupti: return "CUPTI";
    case NvtxRouting::BoundEarlier: return "bound before the timeline started: NVTX ranges are not recorded";
    case NvtxRouting::CuptiFailed: return "CUPTI declined NVTX: NVTX ranges are not recorded";
    case NvtxRouting::ExternalTool: return "NVTX_INJECTION64_PATH's tool";
  }
  return "unknown";
}

NvtxRouting CuptiTimeline::nvtx_routing() {
  switch (g_nvtx_state.load()) {
    case kNvtxToCupti: return NvtxRouting::Cupti;
    case kNvtxBoundEarlier: return NvtxRouting::BoundEarlier;
    case kNvtxCuptiFailed: return NvtxRouting::CuptiFailed;
    default: break;
  }
  // NVTX tries the variable before the static hook, so its tool gets the ranges.
  const char* env = std::getenv("NVTX_INJECTION64_PATH");
  return env && *env ? NvtxRouting::ExternalTool : NvtxRouting::NotBound;
}

struct CuptiTimeline::Impl {
  std::string domain;
  bool running = false;
  std::vector<CUpti_ActivityKind> enabled;
  RawRecords raw;
  GpuTimeline records;

  void release() noexcept {
    for (auto it = enabled.rbegin(); it != enabled.rend(); ++it) cuptiActivityDisable(*it);
    enabled.clear();
    {
      std::lock_guard<std::mutex> lock(g_sink_mutex);
      g_sink = nullptr;
    }
    g_running = nullptr;
  }

  void build() {
    GpuTimeline t;
    std::unordered_map<std::string, std::string> readable;  // kernels repeat: demangle each name once
    for (KernelRecord& k : raw.kernels) {
      auto it = readable.find(k.name);
      if (it == readable.end()) it = readable.emplace(k.name, demangle(k.name)).first;
      k.name = it->second;
    }
    t.kernels = std::move(raw.kernels);
    t.memcpys = std::move(raw.memcpys);
    t.memsets = std::move(raw.memsets);
    t.ranges = pair_markers(raw.markers, domain, &t.unpaired_markers);
    attach_launch_sites(t, raw.calls);
    const auto by_start = [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; };
    std::sort(t.kernels.begin(), t.kernels.end(), by_start);
    std::sort(t.memcpys.begin(), t.memcpys.end(), by_start);
    std::sort(t.memsets.begin(), t.memsets.end(), by_start);
    t.dropped_records = raw.dropped;
    t.incomplete_records = raw.incomplete;
    const bool out_of_memory = raw.out_of_memory;
    raw = RawRecords{};
    records = std::move(t);
    if (out_of_memory) throw std::runtime_error("CuptiTimeline: out of host memory while taking CUPTI's records; the timeline is incomplete");
  }
};

CuptiTimeline::CuptiTimeline(std::string domain) : impl_(std::make_unique<Impl>()) { impl_->domain = std::move(domain); }

CuptiTimeline::~CuptiTimeline() {
  if (!impl_->running) return;
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() has released CUPTI already
  }
}

bool CuptiTimeline::running() const { return impl_->running; }

void CuptiTimeline::start() {
  Impl& I = *impl_;
  if (I.running) throw std::logic_error("CuptiTimeline::start: already running");
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0)
    throw std::runtime_error(std::string("profile needs a CUDA device: ") + (err != cudaSuccess ? cudaGetErrorString(err) : "none found"));
  const void* expected = nullptr;
  if (!g_running.compare_exchange_strong(expected, this))
    throw std::runtime_error("CuptiTimeline::start: another timeline is running (CUPTI's activity buffers are process-wide)");
  g_nvtx_armed = true;
  try {
    register_callbacks();
    I.raw = RawRecords{};
    I.records = GpuTimeline{};
    {
      std::lock_guard<std::mutex> lock(g_sink_mutex);
      g_sink = &I.raw;
    }
    for (CUpti_ActivityKind kind : collected_kinds()) {
      SPECONTEXT_CUPTI_CHECK(cuptiActivityEnable(kind));
      I.enabled.push_back(kind);
    }
    // Driver launches outside any public API call (take() reads them like API records); optional.
    if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_INTERNAL_LAUNCH_API) == CUPTI_SUCCESS)
      I.enabled.push_back(CUPTI_ACTIVITY_KIND_INTERNAL_LAUNCH_API);
  } catch (...) {
    I.release();
    if (g_nvtx_state.load() == kNvtxNotBound) g_nvtx_armed = false;  // no timeline: NVTX stays tool-less
    throw;
  }
  I.running = true;
}

void CuptiTimeline::stop() {
  Impl& I = *impl_;
  if (!I.running) return;
  I.running = false;
  // Records of work still on the device have no end time yet: wait for it (every stream).
  const cudaError_t sync = cudaDeviceSynchronize();
  for (auto it = I.enabled.rbegin(); it != I.enabled.rend(); ++it) cuptiActivityDisable(*it);
  I.enabled.clear();
  // Forced: also the buffers holding records still incomplete, which are then left out.
  const CUptiResult flush = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  // Drops after the last completed buffer (e.g. every buffer request failed) are counted only here.
  std::size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS) {
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    I.raw.dropped += dropped;
  }
  I.release();
  I.build();
  if (sync != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(sync) + " in cudaDeviceSynchronize() at " + __FILE__ + ":" +
                             std::to_string(__LINE__) + " (stopping the CUPTI timeline)");
  SPECONTEXT_CUPTI_CHECK(flush);
}

const GpuTimeline& CuptiTimeline::records() const { return impl_->records; }

nlohmann::json CuptiTimeline::chrome_trace() const { return ::specontext::chrome_trace(impl_->records); }

nlohmann::json CuptiTimeline::summary() const {
  nlohmann::json s = step_breakdown(impl_->records);
  s["nvtx_routing"] = to_string(nvtx_routing());
  return s;
}

}  // namespace specontext
