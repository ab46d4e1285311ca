// The CUPTI timeline's views from hand-made records (engine/chrome_trace.hpp): markers paired into
// ranges, GPU work placed in the NVTX range of its launch, the Chrome trace's events and times, and
// the per-step breakdown, every number worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/chrome_trace.hpp"

namespace specontext {
namespace {

constexpr std::uint32_t kThread = 4242;

// One host thread: a prefill, then two decode steps.
//   prefill            [  100,  900] µs
//   step 0             [1000, 2000]
//     retrieval_head   [1050, 1100]
//     layer 0          [1200, 1600]
//       attention      [1250, 1400]
//       mlp            [1400, 1550]
//   step 1             [3000, 3500]
struct Span {
  std::string name;
  std::uint64_t start_us, end_us;
};
const std::vector<Span> kSpans = {{"prefill", 100, 900},   {"step 0", 1000, 2000}, {"retrieval_head", 1050, 1100}, {"layer 0", 1200, 1600},
                                  {"attention", 1250, 1400}, {"mlp", 1400, 1550},   {"step 1", 3000, 3500}};

std::uint64_t us(std::uint64_t v) { return v * 1000; }

std::vector<MarkerRecord> markers_of(const std::vector<Span>& spans, const std::string& domain, std::uint32_t first_id) {
  std::vector<MarkerRecord> m;
  std::uint32_t id = first_id;
  for (const Span& s : spans) {
    m.push_back({MarkerRecord::Phase::Start, id, kThread, us(s.start_us), s.name, domain});
    m.push_back({MarkerRecord::Phase::End, id, kThread, us(s.end_us), "", ""});
    ++id;
  }
  return m;
}

KernelRecord kernel(const std::string& name, std::uint32_t correlation, std::uint64_t start_us, std::uint64_t end_us, std::uint32_t stream = 7) {
  KernelRecord k;
  k.name = name;
  k.stream = stream;
  k.correlation = correlation;
  k.start_ns = us(start_us);
  k.end_ns = us(end_us);
  k.grid = {4, 2, 1};
  k.block = {128, 1, 1};
  k.registers_per_thread = 40;
  k.static_shared_bytes = 1024;
  k.dynamic_shared_bytes = 2048;
  return k;
}

MemcpyRecord copy(CopyKind kind, std::uint64_t bytes, std::uint32_t correlation, std::uint64_t start_us, std::uint64_t end_us) {
  MemcpyRecord c;
  c.kind = kind;
  c.src = kind == CopyKind::HostToDevice ? MemoryKind::Pageable : MemoryKind::Device;
  c.dst = kind == CopyKind::HostToDevice ? MemoryKind::Device : MemoryKind::Pinned;
  c.bytes = bytes;
  c.stream = 13;
  c.correlation = correlation;
  c.start_ns = us(start_us);
  c.end_ns = us(end_us);
  return c;
}

// The timeline the tests share: GPU work runs after its launch, as on a real device.
GpuTimeline sample_timeline() {
  GpuTimeline t;
  t.ranges = pair_markers(markers_of(kSpans, "specontext", 1), "specontext");
  t.kernels = {
      kernel(demangle("_Z14retrieval_headPKfPfi"), 1, 1500, 1520),  // launched in retrieval_head: 20 µs
      kernel("attention", 2, 1600, 1650),                // attention: 50 µs
      kernel("mlp_up", 3, 1700, 1730),                   // mlp: 30 µs
      kernel("mlp_down", 4, 1730, 1740),                 // mlp: 10 µs
      kernel("add_rmsnorm", 5, 1550, 1555),              // layer 0 itself: 5 µs
      kernel("graph_replay", 6, 3200, 3300),             // step 1 itself: 100 µs
      kernel("prefill_attention", 7, 600, 700),          // the prefill: outside the steps
      kernel("no_launch_record", 99, 4000, 4001),        // its launch was not recorded: outside
  };
  // H2D in step 0: 1 MB in [1100, 1120] and 3 MB in [1110, 1150], overlapping: in flight 50 µs.
  t.memcpys = {copy(CopyKind::HostToDevice, 1000000, 10, 1100, 1120), copy(CopyKind::HostToDevice, 3000000, 11, 1110, 1150),
               copy(CopyKind::DeviceToHost, 400, 12, 1900, 1901), copy(CopyKind::HostToDevice, 64, 13, 500, 501)};
  MemsetRecord m;
  m.memory = MemoryKind::Device;
  m.bytes = 1024;
  m.stream = 7;
  m.correlation = 14;
  m.start_ns = us(3100);
  m.end_ns = us(3101);
  t.memsets = {m};
  // The launches: correlation id -> the host call's time.
  const std::vector<std::pair<std::uint32_t, std::uint64_t>> launched = {{1, 1060}, {2, 1260}, {3, 1410}, {4, 1420}, {5, 1210}, {6, 3100}, {7, 500},
                                                                         {10, 1010}, {11, 1020}, {12, 1800}, {13, 400}, {14, 3050}};
  std::vector<ApiRecord> calls;
  for (const auto& [id, at] : launched) calls.push_back({id, kThread, us(at), us(at) + 3000});
  calls.push_back({1, kThread, us(1061), us(1062)});  // the driver call inside the runtime's: the outer one counts
  attach_launch_sites(t, calls);
  return t;
}

// The first event of phase `ph` (and category `cat`, when given) named `name`.
const nlohmann::json* find_event(const nlohmann::json& trace, const std::string& ph, const std::string& name, const std::string& cat = "") {
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == ph && e.at("name") == name && (cat.empty() || e.at("cat") == cat)) return &e;
  return nullptr;
}

TEST(ChromeTrace, MarkersPairByIdInAnyOrderAndKeepOneDomain) {
  std::vector<MarkerRecord> m = markers_of(kSpans, "specontext", 1);
  const std::vector<MarkerRecord> other = markers_of({{"foreign", 1000, 1100}}, "cublas", 100);
  m.insert(m.end(), other.begin(), other.end());
  m.push_back({MarkerRecord::Phase::End, 777, kThread, us(50), "", ""});                 // its start came before the collection
  m.push_back({MarkerRecord::Phase::Start, 888, kThread, us(5000), "open", "specontext"});  // still open at stop
  m.push_back({MarkerRecord::Phase::Instant, 999, kThread, us(10), "mark", "specontext"});  // not a range
  std::reverse(m.begin(), m.end());  // buffers arrive in any order
  std::uint64_t unpaired = 0;
  const std::vector<RangeRecord> ranges = pair_markers(m, "specontext", &unpaired);
  EXPECT_EQ(unpaired, 2u);
  ASSERT_EQ(ranges.size(), kSpans.size());
  for (const Span& s : kSpans) {
    const auto it = std::find_if(ranges.begin(), ranges.end(), [&](const RangeRecord& r) { return r.name == s.name; });
    ASSERT_NE(it, ranges.end()) << s.name;
    EXPECT_EQ(it->start_ns, us(s.start_us)) << s.name;
    EXPECT_EQ(it->end_ns, us(s.end_us)) << s.name;
    EXPECT_EQ(it->domain, "specontext");
    EXPECT_EQ(it->thread, kThread);
  }
  EXPECT_EQ(pair_markers(m, "").size(), kSpans.size() + 1) << "an empty domain keeps every domain";
}

TEST(ChromeTrace, DemanglesKernelNames) {
  EXPECT_EQ(demangle("_Z14retrieval_headPKfPfi"), "retrieval_head(float const*, float*, int)");
  EXPECT_EQ(demangle("attention"), "attention");
  EXPECT_EQ(demangle("_Znot a mangled name"), "_Znot a mangled name");
}

TEST(ChromeTrace, LaunchSitesComeFromTheOuterCallWithTheSameCorrelationId) {
  const GpuTimeline t = sample_timeline();
  ASSERT_TRUE(t.kernels[0].launch.known);
  EXPECT_EQ(t.kernels[0].launch.ns, us(1060));  // the runtime call, not the driver call at 1061
  EXPECT_EQ(t.kernels[0].launch.thread, kThread);
  EXPECT_FALSE(t.kernels[7].launch.known);
  EXPECT_TRUE(t.memsets[0].launch.known);
}

TEST(ChromeTrace, EventsInMicrosecondsFromTheFirstEventWithStreamsAndNestedRanges) {
  const nlohmann::json trace = chrome_trace(sample_timeline());
  ASSERT_TRUE(trace.contains("traceEvents"));
  const nlohmann::json* process = find_event(trace, "M", "process_name");
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->at("args").at("name"), "GPU");

  // The first event is the prefill range at 100 µs: times count from it.
  EXPECT_EQ(trace.at("otherData").at("origin_ns"), us(100));
  const nlohmann::json* k = find_event(trace, "X", "retrieval_head(float const*, float*, int)");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->at("cat"), "kernel");
  EXPECT_DOUBLE_EQ(k->at("ts").get<double>(), 1400.0);
  EXPECT_DOUBLE_EQ(k->at("dur").get<double>(), 20.0);
  EXPECT_EQ(k->at("tid"), 7);
  EXPECT_EQ(k->at("args").at("grid"), nlohmann::json({4, 2, 1}));
  EXPECT_EQ(k->at("args").at("block"), nlohmann::json({128, 1, 1}));
  EXPECT_EQ(k->at("args").at("registers_per_thread"), 40);
  EXPECT_EQ(k->at("args").at("static_shared_bytes"), 1024);
  EXPECT_EQ(k->at("args").at("dynamic_shared_bytes"), 2048);
  EXPECT_EQ(k->at("args").at("nvtx"), "step 0/retrieval_head");
  const nlohmann::json* attention = find_event(trace, "X", "attention", "kernel");
  ASSERT_NE(attention, nullptr);
  EXPECT_EQ(attention->at("args").at("nvtx"), "step 0/layer 0/attention");
  ASSERT_NE(find_event(trace, "X", "no_launch_record"), nullptr);
  EXPECT_TRUE(find_event(trace, "X", "no_launch_record")->at("args").at("nvtx").is_null());

  // A thread per stream, named.
  int stream_names = 0;
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == "M" && e.at("name") == "thread_name" && (e.at("tid") == 7 || e.at("tid") == 13)) {
      EXPECT_EQ(e.at("args").at("name"), "stream " + std::to_string(e.at("tid").get<int>()));
      ++stream_names;
    }
  EXPECT_EQ(stream_names, 2);

  // Copies: bytes, direction, memory kinds, and their own rate (1 MB in 20 µs = 50 GB/s).
  const nlohmann::json* h2d = nullptr;
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("cat") == "memcpy" && e.at("args").at("bytes") == 1000000) h2d = &e;
  ASSERT_NE(h2d, nullptr);
  EXPECT_EQ(h2d->at("name"), "memcpy HtoD");
  EXPECT_EQ(h2d->at("tid"), 13);
  EXPECT_EQ(h2d->at("args").at("kind"), "HtoD");
  EXPECT_EQ(h2d->at("args").at("src"), "pageable");
  EXPECT_EQ(h2d->at("args").at("dst"), "device");
  EXPECT_DOUBLE_EQ(h2d->at("args").at("gbps").get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(h2d->at("ts").get<double>(), 1000.0);
  const nlohmann::json* memset = find_event(trace, "X", "memset");
  ASSERT_NE(memset, nullptr);
  EXPECT_EQ(memset->at("args").at("bytes"), 1024);
  EXPECT_EQ(memset->at("args").at("memory"), "device");

  // NVTX ranges: one thread of their own, nested by time, with their depth.
  const nlohmann::json* step = find_event(trace, "X", "step 0");
  const nlohmann::json* layer = find_event(trace, "X", "layer 0");
  const nlohmann::json* attn = find_event(trace, "X", "attention", "nvtx");
  ASSERT_TRUE(step && layer && attn);
  EXPECT_EQ(step->at("tid"), layer->at("tid"));
  EXPECT_EQ(layer->at("tid"), attn->at("tid"));
  EXPECT_NE(step->at("tid"), 7);
  EXPECT_NE(step->at("tid"), 13);
  EXPECT_EQ(step->at("args").at("depth"), 0);
  EXPECT_EQ(layer->at("args").at("depth"), 1);
  EXPECT_EQ(attn->at("args").at("depth"), 2);
  EXPECT_EQ(attn->at("args").at("domain"), "specontext");
  EXPECT_DOUBLE_EQ(step->at("ts").get<double>(), 900.0);
  EXPECT_DOUBLE_EQ(step->at("dur").get<double>(), 1000.0);
  const auto inside = [](const nlohmann::json& outer, const nlohmann::json& inner) {
    return outer.at("ts").get<double>() <= inner.at("ts").get<double>() &&
           inner.at("ts").get<double>() + inner.at("dur").get<double>() <= outer.at("ts").get<double>() + outer.at("dur").get<double>();
  };
  EXPECT_TRUE(inside(*step, *layer));
  EXPECT_TRUE(inside(*layer, *attn));
}

TEST(ChromeTrace, StepBreakdownSumsKernelTimePerRangeAndH2dRate) {
  const nlohmann::json b = step_breakdown(sample_timeline());
  ASSERT_EQ(b.at("steps").size(), 2u);
  const auto& s0 = b.at("steps")[0];
  EXPECT_EQ(s0.at("step"), 0);
  EXPECT_DOUBLE_EQ(s0.at("host_ms").get<double>(), 1.0);
  EXPECT_EQ(s0.at("kernels"), 5);
  EXPECT_NEAR(s0.at("kernel_ms").get<double>(), 0.115, 1e-12);  // 20 + 50 + 30 + 10 + 5 µs
  const auto& by = s0.at("kernel_ms_by_range");
  EXPECT_NEAR(by.at("retrieval_head").get<double>(), 0.020, 1e-12);
  EXPECT_NEAR(by.at("attention").get<double>(), 0.050, 1e-12);
  EXPECT_NEAR(by.at("mlp").get<double>(), 0.040, 1e-12);
  EXPECT_NEAR(by.at("layer").get<double>(), 0.005, 1e-12);  // "layer 0" itself, its number dropped
  EXPECT_FALSE(by.contains("step"));
  // 4 MB while some H2D copy was in flight, [1100, 1150] µs: 4e6 B / 50e3 ns = 80 GB/s.
  EXPECT_EQ(s0.at("h2d_bytes"), 4000000);
  EXPECT_NEAR(s0.at("h2d_ms").get<double>(), 0.050, 1e-12);
  EXPECT_NEAR(s0.at("h2d_gbps").get<double>(), 80.0, 1e-9);
  EXPECT_EQ(s0.at("d2h_bytes"), 400);
  // GPU work of step 0 from the first copy (1100 µs) to the D2H copy's end (1901 µs).
  EXPECT_NEAR(s0.at("gpu_span_ms").get<double>(), 0.801, 1e-12);

  const auto& s1 = b.at("steps")[1];
  EXPECT_EQ(s1.at("step"), 1);
  EXPECT_EQ(s1.at("kernels"), 1);
  EXPECT_NEAR(s1.at("kernel_ms_by_range").at("step").get<double>(), 0.100, 1e-12);  // launched by the step itself
  EXPECT_EQ(s1.at("h2d_bytes"), 0);
  EXPECT_TRUE(s1.at("h2d_gbps").is_null());
  EXPECT_EQ(s1.at("memset_bytes"), 1024);

  // The prefill's kernel and the one without a launch record; the prefill's copy.
  EXPECT_EQ(b.at("outside_steps").at("kernels"), 2);
  EXPECT_NEAR(b.at("outside_steps").at("kernel_ms").get<double>(), 0.101, 1e-12);
  EXPECT_EQ(b.at("outside_steps").at("h2d_bytes"), 64);
  EXPECT_EQ(b.at("range_names"), nlohmann::json({"retrieval_head", "layer", "attention", "mlp", "step"}));

  const std::string table = step_breakdown_table(b);
  EXPECT_NE(table.find("| step | host ms |"), std::string::npos) << table;
  EXPECT_NE(table.find(" attention ms |"), std::string::npos) << table;
  EXPECT_NE(table.find("| 0 | 1.000 | 0.801 | 5 | 0.115 | 0.020 | 0.005 | 0.050 | 0.040 | - | 4.000 | 80.0 | 0.000 |"), std::string::npos) << table;
}

TEST(ChromeTrace, AnEmptyTimelineGivesAnEmptyTraceAndNoSteps) {
  const GpuTimeline empty;
  const nlohmann::json trace = chrome_trace(empty);
  EXPECT_EQ(trace.at("traceEvents").size(), 1u);  // the process name only
  EXPECT_TRUE(step_breakdown(empty).at("steps").empty());
}

}  // namespace
}  // namespace specontext
