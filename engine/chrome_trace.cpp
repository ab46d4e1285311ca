// The GPU timeline's Chrome trace and per-step breakdown (engine/chrome_trace.hpp).
#include "engine/chrome_trace.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace specontext {

std::string to_string(CopyKind kind) {
  switch (kind) {
    case CopyKind::HostToDevice: return "HtoD";
    case CopyKind::DeviceToHost: return "DtoH";
    case CopyKind::DeviceToDevice: return "DtoD";
    case CopyKind::HostToHost: return "HtoH";
    case CopyKind::PeerToPeer: return "PtoP";
    case CopyKind::Array: return "array";
    case CopyKind::Unknown: break;
  }
  return "unknown";
}

std::string to_string(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::Pageable: return "pageable";
    case MemoryKind::Pinned: return "pinned";
    case MemoryKind::Device: return "device";
    case MemoryKind::Managed: return "managed";
    case MemoryKind::Array: return "array";
    case MemoryKind::Unknown: break;
  }
  return "unknown";
}

std::vector<RangeRecord> pair_markers(const std::vector<MarkerRecord>& markers, const std::string& domain, std::uint64_t* unpaired) {
  // Buffers arrive in any order; a range's end never precedes its start, and at equal times the
  // start goes first.
  std::vector<const MarkerRecord*> sorted;
  sorted.reserve(markers.size());
  for (const MarkerRecord& m : markers)
    if (m.phase != MarkerRecord::Phase::Instant) sorted.push_back(&m);
  std::stable_sort(sorted.begin(), sorted.end(), [](const MarkerRecord* a, const MarkerRecord* b) {
    return std::make_tuple(a->ns, a->phase == MarkerRecord::Phase::End) < std::make_tuple(b->ns, b->phase == MarkerRecord::Phase::End);
  });
  std::unordered_map<std::uint32_t, const MarkerRecord*> open;
  std::vector<RangeRecord> ranges;
  std::uint64_t lost = 0;
  for (const MarkerRecord* m : sorted) {
    if (m->phase == MarkerRecord::Phase::Start) {
      auto [it, inserted] = open.emplace(m->id, m);
      if (!inserted) {  // an id reused before its end came: the first start stays unpaired
        ++lost;
        it->second = m;
      }
      continue;
    }
    const auto it = open.find(m->id);
    if (it == open.end()) {  // its start came before the collection began
      ++lost;
      continue;
    }
    const MarkerRecord& s = *it->second;
    if (domain.empty() || s.domain == domain) ranges.push_back({s.name, s.domain, s.thread, s.ns, m->ns});
    open.erase(it);
  }
  lost += open.size();  // still open when the collection stopped
  if (unpaired) *unpaired = lost;
  std::sort(ranges.begin(), ranges.end(), [](const RangeRecord& a, const RangeRecord& b) {
    return std::make_tuple(a.thread, a.start_ns, b.end_ns) < std::make_tuple(b.thread, b.start_ns, a.end_ns);
  });
  return ranges;
}

void attach_launch_sites(GpuTimeline& timeline, const std::vector<ApiRecord>& calls) {
  // A runtime call and the driver call inside it may share an id; the outer (earlier) one is the launch.
  std::unordered_map<std::uint32_t, const ApiRecord*> by_id;
  by_id.reserve(calls.size());
  for (const ApiRecord& c : calls) {
    auto [it, inserted] = by_id.emplace(c.correlation, &c);
    if (!inserted && c.start_ns < it->second->start_ns) it->second = &c;
  }
  const auto site = [&](std::uint32_t correlation) {
    LaunchSite s;
    const auto it = by_id.find(correlation);
    if (correlation != 0 && it != by_id.end()) s = {true, it->second->thread, it->second->start_ns};
    return s;
  };
  for (KernelRecord& k : timeline.kernels) k.launch = site(k.correlation);
  for (MemcpyRecord& c : timeline.memcpys) c.launch = site(c.correlation);
  for (MemsetRecord& m : timeline.memsets) m.launch = site(m.correlation);
}

std::string demangle(const std::string& name) {
  if (name.rfind("_Z", 0) != 0) return name;
  int status = 0;
  char* readable = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  if (status != 0 || !readable) return name;
  std::string out(readable);
  std::free(readable);
  return out;
}

namespace {

// The ranges of each host thread with their nesting: the innermost range containing a time is a
// binary search and a short walk up the parents (push/pop ranges nest properly).
class RangeIndex {
 public:
  explicit RangeIndex(const std::vector<RangeRecord>& ranges) : ranges_(ranges), parent_(ranges.size(), -1), depth_(ranges.size(), 0) {
    for (std::size_t i = 0; i < ranges.size(); ++i) by_thread_[ranges[i].thread].push_back(static_cast<int>(i));
    for (auto& [thread, list] : by_thread_) {
      std::sort(list.begin(), list.end(), [&](int a, int b) {
        return std::make_tuple(ranges_[a].start_ns, ranges_[b].end_ns) < std::make_tuple(ranges_[b].start_ns, ranges_[a].end_ns);
      });
      std::vector<int> stack;
      for (int i : list) {
        while (!stack.empty() && !contains(stack.back(), ranges_[i].start_ns, ranges_[i].end_ns)) stack.pop_back();
        if (!stack.empty()) {
          parent_[i] = stack.back();
          depth_[i] = depth_[stack.back()] + 1;
        }
        stack.push_back(i);
      }
    }
  }

  // The innermost range of `thread` containing time `ns`, or -1.
  int innermost(std::uint32_t thread, std::uint64_t ns) const {
    const auto t = by_thread_.find(thread);
    if (t == by_thread_.end()) return -1;
    const std::vector<int>& list = t->second;
    auto it = std::upper_bound(list.begin(), list.end(), ns, [&](std::uint64_t v, int i) { return v < ranges_[i].start_ns; });
    if (it == list.begin()) return -1;
    // The last range to start at or before ns: it, or one of its ancestors, is the innermost one.
    for (int i = *(it - 1); i >= 0; i = parent_[i])
      if (contains(i, ns, ns)) return i;
    return -1;
  }

  int parent(int i) const { return parent_[i]; }
  int depth(int i) const { return depth_[i]; }
  const RangeRecord& range(int i) const { return ranges_[i]; }

  std::string path(int i) const {
    std::string p;
    for (; i >= 0; i = parent_[i]) p = ranges_[i].name + (p.empty() ? "" : "/" + p);
    return p;
  }

  std::vector<std::uint32_t> threads() const {
    std::vector<std::uint32_t> out;
    for (const auto& [thread, list] : by_thread_) out.push_back(thread);
    return out;
  }

 private:
  bool contains(int i, std::uint64_t from, std::uint64_t to) const { return ranges_[i].start_ns <= from && to <= ranges_[i].end_ns; }

  const std::vector<RangeRecord>& ranges_;
  std::vector<int> parent_, depth_;
  std::map<std::uint32_t, std::vector<int>> by_thread_;
};

// "step 12" -> 12; not a step range -> nullopt.
std::optional<long long> step_number(const std::string& name) {
  const std::string prefix = "step ";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  long long n = 0;
  for (std::size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

// "layer 3" -> "layer": one column for the work every layer does.
std::string range_key(const std::string& name) {
  std::size_t end = name.size();
  while (end > 0 && name[end - 1] >= '0' && name[end - 1] <= '9') --end;
  if (end == name.size() || end == 0 || name[end - 1] != ' ') return name;
  return name.substr(0, end - 1);
}

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// The time at least one interval covers.
std::uint64_t union_ns(std::vector<std::pair<std::uint64_t, std::uint64_t>> intervals) {
  std::sort(intervals.begin(), intervals.end());
  std::uint64_t total = 0, cur_start = 0, cur_end = 0;
  bool open = false;
  for (const auto& [s, e] : intervals) {
    if (!open || s > cur_end) {
      if (open) total += cur_end - cur_start;
      cur_start = s;
      cur_end = e;
      open = true;
    } else {
      cur_end = std::max(cur_end, e);
    }
  }
  if (open) total += cur_end - cur_start;
  return total;
}

std::uint64_t duration(std::uint64_t start, std::uint64_t end) { return end > start ? end - start : 0; }

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

constexpr long long kNvtxTidBase = 1000000000;  // above every (device, stream) tid
constexpr long long kDeviceTidStride = 1000000;

long long stream_tid(std::uint32_t device, std::uint32_t stream) { return static_cast<long long>(device) * kDeviceTidStride + stream; }

}  // namespace

nlohmann::json chrome_trace(const GpuTimeline& t) {
  const RangeIndex index(t.ranges);
  std::uint64_t origin = UINT64_MAX;
  for (const auto& k : t.kernels) origin = std::min(origin, k.start_ns);
  for (const auto& c : t.memcpys) origin = std::min(origin, c.start_ns);
  for (const auto& m : t.memsets) origin = std::min(origin, m.start_ns);
  for (const auto& r : t.ranges) origin = std::min(origin, r.start_ns);
  if (origin == UINT64_MAX) origin = 0;
  const auto us = [&](std::uint64_t ns) { return static_cast<double>(ns - origin) / 1e3; };
  const auto nvtx_of = [&](const LaunchSite& s) -> nlohmann::json {
    if (!s.known) return nullptr;
    const int r = index.innermost(s.thread, s.ns);
    return r < 0 ? nlohmann::json(nullptr) : nlohmann::json(index.path(r));
  };

  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"args", {{"name", "GPU"}}}});
  std::set<std::pair<std::uint32_t, std::uint32_t>> streams;
  for (const auto& k : t.kernels) streams.insert({k.device, k.stream});
  for (const auto& c : t.memcpys) streams.insert({c.device, c.stream});
  for (const auto& m : t.memsets) streams.insert({m.device, m.stream});
  std::set<std::uint32_t> devices;
  for (const auto& [device, stream] : streams) devices.insert(device);
  for (const auto& [device, stream] : streams) {
    const long long tid = stream_tid(device, stream);
    const std::string name = (devices.size() > 1 ? "device " + std::to_string(device) + " " : std::string()) + "stream " + std::to_string(stream);
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", name}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", 1}, {"tid", tid}, {"args", {{"sort_index", tid}}}});
  }
  std::map<std::uint32_t, long long> nvtx_tid;
  for (std::uint32_t thread : index.threads()) {
    const long long tid = kNvtxTidBase + static_cast<long long>(nvtx_tid.size());
    nvtx_tid[thread] = tid;
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", "NVTX (host thread " + std::to_string(thread) + ")"}}}});
    // Above the streams: the ranges read as the headings of the GPU work below them.
    events.push_back({{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", 1}, {"tid", tid}, {"args", {{"sort_index", -1000 + static_cast<long long>(nvtx_tid.size())}}}});
  }

  for (std::size_t i = 0; i < t.ranges.size(); ++i) {
    const RangeRecord& r = t.ranges[i];
    events.push_back({{"ph", "X"}, {"cat", "nvtx"}, {"name", r.name}, {"pid", 1}, {"tid", nvtx_tid.at(r.thread)},
                      {"ts", us(r.start_ns)}, {"dur", static_cast<double>(duration(r.start_ns, r.end_ns)) / 1e3},
                      {"args", {{"domain", r.domain}, {"depth", index.depth(static_cast<int>(i))}}}});
  }
  for (const auto& k : t.kernels) {
    nlohmann::json args = {{"grid", k.grid}, {"block", k.block}, {"registers_per_thread", k.registers_per_thread},
                           {"static_shared_bytes", k.static_shared_bytes}, {"dynamic_shared_bytes", k.dynamic_shared_bytes},
                           {"stream", k.stream}, {"correlation_id", k.correlation}, {"nvtx", nvtx_of(k.launch)}};
    if (k.graph) args["graph_id"] = k.graph;
    events.push_back({{"ph", "X"}, {"cat", "kernel"}, {"name", k.name}, {"pid", 1}, {"tid", stream_tid(k.device, k.stream)},
                      {"ts", us(k.start_ns)}, {"dur", static_cast<double>(duration(k.start_ns, k.end_ns)) / 1e3}, {"args", args}});
  }
  for (const auto& c : t.memcpys) {
    const std::uint64_t d = duration(c.start_ns, c.end_ns);
    nlohmann::json args = {{"bytes", c.bytes}, {"kind", to_string(c.kind)}, {"src", to_string(c.src)}, {"dst", to_string(c.dst)},
                           {"gbps", d > 0 ? nlohmann::json(static_cast<double>(c.bytes) / static_cast<double>(d)) : nlohmann::json(nullptr)},
                           {"stream", c.stream}, {"correlation_id", c.correlation}, {"nvtx", nvtx_of(c.launch)}};
    if (c.graph) args["graph_id"] = c.graph;
    events.push_back({{"ph", "X"}, {"cat", "memcpy"}, {"name", "memcpy " + to_string(c.kind)}, {"pid", 1}, {"tid", stream_tid(c.device, c.stream)},
                      {"ts", us(c.start_ns)}, {"dur", static_cast<double>(d) / 1e3}, {"args", args}});
  }
  for (const auto& m : t.memsets) {
    nlohmann::json args = {{"bytes", m.bytes}, {"value", m.value}, {"memory", to_string(m.memory)}, {"stream", m.stream},
                           {"correlation_id", m.correlation}, {"nvtx", nvtx_of(m.launch)}};
    if (m.graph) args["graph_id"] = m.graph;
    events.push_back({{"ph", "X"}, {"cat", "memset"}, {"name", "memset"}, {"pid", 1}, {"tid", stream_tid(m.device, m.stream)},
                      {"ts", us(m.start_ns)}, {"dur", static_cast<double>(duration(m.start_ns, m.end_ns)) / 1e3}, {"args", args}});
  }
  return {{"traceEvents", events},
          {"displayTimeUnit", "ms"},
          {"otherData", {{"source", "specontext profile (CUPTI, measured)"}, {"origin_ns", origin}, {"dropped_records", t.dropped_records},
                         {"incomplete_records", t.incomplete_records}, {"unpaired_markers", t.unpaired_markers}}}};
}

nlohmann::json step_breakdown(const GpuTimeline& t) {
  const RangeIndex index(t.ranges);
  struct Step {
    long long number = 0;
    const RangeRecord* range = nullptr;
    std::uint64_t kernels = 0, kernel_ns = 0, h2d_bytes = 0, d2h_bytes = 0, memset_bytes = 0;
    std::map<std::string, std::uint64_t> by_range_ns;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> h2d, d2h;
    std::uint64_t first = UINT64_MAX, last = 0;
    void span(std::uint64_t s, std::uint64_t e) {
      first = std::min(first, s);
      last = std::max(last, e);
    }
  };
  std::map<int, Step> steps;  // by range index
  for (std::size_t i = 0; i < t.ranges.size(); ++i)
    if (const auto n = step_number(t.ranges[i].name)) {
      Step& s = steps[static_cast<int>(i)];
      s.number = *n;
      s.range = &t.ranges[i];
    }

  // The step and the column of an activity launched at `s`.
  const auto locate = [&](const LaunchSite& s) -> std::pair<Step*, std::string> {
    if (!s.known) return {nullptr, ""};
    const int inner = index.innermost(s.thread, s.ns);
    for (int r = inner; r >= 0; r = index.parent(r)) {
      const auto it = steps.find(r);
      if (it == steps.end()) continue;
      return {&it->second, r == inner ? std::string("step") : range_key(index.range(inner).name)};
    }
    return {nullptr, ""};
  };

  std::uint64_t outside_kernels = 0, outside_kernel_ns = 0, outside_h2d = 0;
  for (const auto& k : t.kernels) {
    const auto [step, key] = locate(k.launch);
    const std::uint64_t d = duration(k.start_ns, k.end_ns);
    if (!step) {
      ++outside_kernels;
      outside_kernel_ns += d;
      continue;
    }
    ++step->kernels;
    step->kernel_ns += d;
    step->by_range_ns[key] += d;
    step->span(k.start_ns, k.end_ns);
  }
  for (const auto& c : t.memcpys) {
    const auto [step, key] = locate(c.launch);
    if (!step) {
      if (c.kind == CopyKind::HostToDevice) outside_h2d += c.bytes;
      continue;
    }
    step->span(c.start_ns, c.end_ns);
    if (c.kind == CopyKind::HostToDevice) {
      step->h2d_bytes += c.bytes;
      step->h2d.emplace_back(c.start_ns, c.end_ns);
    } else if (c.kind == CopyKind::DeviceToHost) {
      step->d2h_bytes += c.bytes;
      step->d2h.emplace_back(c.start_ns, c.end_ns);
    }
  }
  for (const auto& m : t.memsets) {
    const auto [step, key] = locate(m.launch);
    if (!step) continue;
    step->span(m.start_ns, m.end_ns);
    step->memset_bytes += m.bytes;
  }

  // Columns in the order of a step (DESIGN.md), then any others.
  const std::vector<std::string> order = {"retrieval_head", "select", "prefetch", "layer", "attention", "mlp", "step"};
  std::set<std::string> seen;
  for (const auto& [i, s] : steps)
    for (const auto& [key, ns] : s.by_range_ns) seen.insert(key);
  std::vector<std::string> names;
  for (const std::string& n : order)
    if (seen.count(n)) names.push_back(n);
  for (const std::string& n : seen)
    if (std::find(order.begin(), order.end(), n) == order.end()) names.push_back(n);

  std::vector<const Step*> ordered;
  for (const auto& [i, s] : steps) ordered.push_back(&s);
  std::sort(ordered.begin(), ordered.end(), [](const Step* a, const Step* b) { return a->range->start_ns < b->range->start_ns; });
  nlohmann::json rows = nlohmann::json::array();
  for (const Step* s : ordered) {
    nlohmann::json by_range = nlohmann::json::object();
    for (const auto& [key, ns] : s->by_range_ns) by_range[key] = ms(ns);
    const std::uint64_t h2d_ns = union_ns(s->h2d), d2h_ns = union_ns(s->d2h);
    rows.push_back({{"step", s->number},
                    {"thread", s->range->thread},
                    {"host_ms", ms(duration(s->range->start_ns, s->range->end_ns))},
                    {"gpu_span_ms", s->last > s->first ? ms(s->last - s->first) : 0.0},
                    {"kernels", s->kernels},
                    {"kernel_ms", ms(s->kernel_ns)},
                    {"kernel_ms_by_range", by_range},
                    {"h2d_bytes", s->h2d_bytes},
                    {"h2d_ms", ms(h2d_ns)},
                    {"h2d_gbps", h2d_ns > 0 ? nlohmann::json(static_cast<double>(s->h2d_bytes) / static_cast<double>(h2d_ns)) : nlohmann::json(nullptr)},
                    {"d2h_bytes", s->d2h_bytes},
                    {"d2h_ms", ms(d2h_ns)},
                    {"memset_bytes", s->memset_bytes}});
  }
  return {{"steps", rows},
          {"range_names", names},
          {"outside_steps", {{"kernels", outside_kernels}, {"kernel_ms", ms(outside_kernel_ns)}, {"h2d_bytes", outside_h2d}}},
          {"dropped_records", t.dropped_records},
          {"incomplete_records", t.incomplete_records},
          {"unpaired_markers", t.unpaired_markers}};
}

std::string step_breakdown_table(const nlohmann::json& b) {
  const auto& names = b.at("range_names");
  std::ostringstream out;
  out << "| step | host ms | GPU span ms | kernels | kernel ms |";
  for (const auto& n : names) out << " " << n.get<std::string>() << " ms |";
  out << " H2D MB | H2D GB/s | D2H MB |\n|-----:|--------:|------------:|--------:|----------:|";
  for (std::size_t i = 0; i < names.size(); ++i) out << "------:|";
  out << "-------:|---------:|-------:|\n";
  for (const auto& s : b.at("steps")) {
    out << "| " << s.at("step").get<long long>() << " | " << fixed(s.at("host_ms").get<double>(), 3) << " | " << fixed(s.at("gpu_span_ms").get<double>(), 3)
        << " | " << s.at("kernels").get<std::uint64_t>() << " | " << fixed(s.at("kernel_ms").get<double>(), 3) << " |";
    const auto& by = s.at("kernel_ms_by_range");
    for (const auto& n : names) {
      const auto it = by.find(n.get<std::string>());
      out << " " << (it == by.end() ? std::string("-") : fixed(it->get<double>(), 3)) << " |";
    }
    const auto& gbps = s.at("h2d_gbps");
    out << " " << fixed(static_cast<double>(s.at("h2d_bytes").get<std::uint64_t>()) / 1e6, 3) << " | "
        << (gbps.is_null() ? std::string("-") : fixed(gbps.get<double>(), 1)) << " | "
        << fixed(static_cast<double>(s.at("d2h_bytes").get<std::uint64_t>()) / 1e6, 3) << " |\n";
  }
  return out.str();
}

}  // namespace specontext
