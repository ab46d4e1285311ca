// The engine's elastic gather (kernels/elastic_gather.cuh) reading random rows from a pinned, mapped
// host buffer, alone on the GPU: GB/s by host footprint (or positions), row size, slice of the row
// read, requests and rows per list.
//
// Why: on the H200 the engine's synchronous loads (512 B rows) ran at ~45 GB/s with a 4.3 GB host
// buffer and ~23 GB/s with 17 GB (sim/VALIDATION.md, "What misses"), while the simulator's link rate
// depends on the row size only. If the rate falls with the footprint here too, the cause is the
// reads' address translation, not the engine's step, and the simulator needs a footprint term.
//
//   gather_footprint [--footprints-gib 1,2,4,8,16,32 | --positions 8192,32768] [--rows 512,2048]
//                    [--requests 32] [--loads 410] [--slice-layers N] [--blocks 32] [--reps 5]
//                    [--host-pages cuda,huge]
//
// One buffer of the largest footprint is pinned once (~0.5 s per GiB); a smaller footprint uses its
// first bytes (host_positions shrinks, so every row lies in that prefix). The host layout is the
// engine's (engine/kv_offload.cuh): each (request, KV head) owns a stretch of host_positions position
// rows of --rows bytes (K|V of rows / 512 layers at head_dim 128). By default each gather moves what
// one layer group of a SpeContext step at R = 32, 8 KV heads, B = 2048, overlap 0.8 moves: 410 random
// positions of each (request, head) stretch, whole rows, fresh lists for each repetition. The
// engine's synchronous (c1) loads read one layer at a time: --slice-layers 1 reads the first layer's
// 512 B of each chosen row, as they do; --requests and --loads (rows per list, 0.2 B) set the rest of
// their shape, and --positions gives S directly instead of the footprint. Every combination of the
// lists is measured; one JSON line per point. --host-pages says how the buffer is pinned
// (engine/pinned_host_buffer.cuh): cudaHostAlloc's base pages ("cuda", the engine's) or an anonymous
// mapping advised onto transparent huge pages and registered ("huge"); each line reports the bytes
// the kernel really backed with huge pages.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/pinned_host_buffer.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/elastic_gather.cuh"

namespace {

constexpr int kKvHeads = 8, kHeadDim = 128;
constexpr double kLayerRowBytes = 2.0 * kHeadDim * 2;  // K and V of one head, bf16

std::vector<double> parse_list(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size() || !(out.back() > 0)) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw std::invalid_argument(flag + ": expected positive numbers separated by commas, got '" + text + "'");
    }
  }
  if (out.empty()) throw std::invalid_argument(flag + ": empty list");
  return out;
}

// A number as the user typed it: no trailing zeros.
std::string shown(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

int parse_count(const std::string& flag, const std::string& text) {
  const std::invalid_argument bad(flag + ": expected a positive integer, got '" + text + "'");
  std::vector<double> v;
  try {
    v = parse_list(flag, text);
  } catch (const std::invalid_argument&) {
    throw bad;
  }
  if (v.size() != 1 || v[0] != static_cast<double>(static_cast<int>(v[0]))) throw bad;
  return static_cast<int>(v[0]);
}

// The copy from pageable memory may return before its DMA lands, and the timed stream does not
// wait for the legacy stream: synchronise before anything reads it.
template <class T>
T* device_copy(const std::vector<T>& v) {
  T* d = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaMalloc(&d, v.size() * sizeof(T)));
  SPECONTEXT_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

int run(int argc, char** argv) {
  const std::string flags = "flags: --footprints-gib, --positions, --rows, --requests, --loads, --slice-layers, --blocks, --reps, --host-pages";
  std::vector<double> footprints_gib = {1, 2, 4, 8, 16, 32}, positions_list, rows = {512, 2048}, requests_list = {32}, loads_list = {410};
  int blocks = 32, reps = 5, slice_layers = 0;  // 0: whole rows
  std::vector<specontext::HostPages> host_pages = {specontext::HostPages::Cuda};
  bool footprints_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(a + ": needs a value (" + flags + ")");
    const std::string v = argv[++i];
    if (a == "--footprints-gib") footprints_gib = parse_list(a, v), footprints_given = true;
    else if (a == "--positions") positions_list = parse_list(a, v);
    else if (a == "--rows") rows = parse_list(a, v);
    else if (a == "--requests") requests_list = parse_list(a, v);
    else if (a == "--loads") loads_list = parse_list(a, v);
    else if (a == "--slice-layers") slice_layers = parse_count(a, v);
    else if (a == "--blocks") blocks = parse_count(a, v);
    else if (a == "--reps") reps = parse_count(a, v);
    else if (a == "--host-pages") {
      host_pages.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) host_pages.push_back(specontext::parse_host_pages(item, a));
      if (host_pages.empty()) throw std::invalid_argument(a + ": empty list");
    }
    else throw std::invalid_argument("unknown flag '" + a + "' (" + flags + ")");
  }
  if (footprints_given && !positions_list.empty()) throw std::invalid_argument("--positions: give it or --footprints-gib, not both");
  for (double r : rows) {
    if (r != kLayerRowBytes && r != 2 * kLayerRowBytes && r != 4 * kLayerRowBytes && r != 8 * kLayerRowBytes)
      throw std::invalid_argument("--rows: each must be 512, 1024, 2048 or 4096 (1, 2, 4 or 8 layers' K|V at head_dim 128), got " +
                                  shown(r));
    if (slice_layers * kLayerRowBytes > r)
      throw std::invalid_argument("--slice-layers: " + std::to_string(slice_layers) + " layers do not fit in rows of " + shown(r) + " bytes");
  }
  for (const auto* list : {&positions_list, &requests_list, &loads_list})
    for (double x : *list)
      if (x != static_cast<double>(static_cast<int>(x)))
        throw std::invalid_argument("--positions, --requests, --loads: whole numbers only, got " + shown(x));
  // Host bytes of one point: each (request, head) stretch holds `positions` rows.
  auto footprint = [](double positions, double requests, double row) { return positions * requests * kKvHeads * row; };
  // Every point's stretch must hold its list (checked before any device is touched).
  for (double r : requests_list)
    for (double row : rows)
      for (double l : loads_list) {
        for (double gib : positions_list.empty() ? footprints_gib : std::vector<double>{})
          if (gib * (1ull << 30) / footprint(1, r, row) < l)
            throw std::invalid_argument("--footprints-gib: " + shown(gib) + " GiB holds fewer than " + shown(l) + " positions per (request, head)");
        for (double p : positions_list)
          if (p < l) throw std::invalid_argument("--positions: " + shown(p) + " is fewer than --loads " + shown(l));
      }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) throw std::runtime_error("no CUDA device");
  cudaDeviceProp prop{};
  SPECONTEXT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  double max_bytes = 0;
  if (positions_list.empty()) {
    max_bytes = *std::max_element(footprints_gib.begin(), footprints_gib.end()) * (1ull << 30);
  } else {
    for (double p : positions_list)
      for (double r : requests_list)
        for (double row : rows) max_bytes = std::max(max_bytes, footprint(p, r, row));
  }
  cudaStream_t stream = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t start = nullptr, stop = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&start));
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&stop));
  for (const specontext::HostPages pages : host_pages) {
    const specontext::PinnedHostBuffer buffer(static_cast<std::size_t>(max_bytes), pages);
    const auto* host_device = static_cast<const std::uint16_t*>(buffer.device());
    const double huge_bytes = static_cast<double>(buffer.huge_page_bytes());
    std::mt19937_64 rng(1);  // the same lists for every kind of pages

    for (double requests_d : requests_list)
      for (double loads_d : loads_list) {
        const int requests = static_cast<int>(requests_d), loads = static_cast<int>(loads_d);
        std::vector<std::int32_t> slots(static_cast<std::size_t>(requests)), load_slots(static_cast<std::size_t>(requests) * kKvHeads * loads),
            counts(static_cast<std::size_t>(requests) * kKvHeads, loads);
        for (int i = 0; i < requests; ++i) slots[static_cast<std::size_t>(i)] = i;
        for (std::size_t b = 0; b < counts.size(); ++b)
          for (int k = 0; k < loads; ++k) load_slots[b * static_cast<std::size_t>(loads) + static_cast<std::size_t>(k)] = k;
        std::int32_t *d_slots = device_copy(slots), *d_load_slots = device_copy(load_slots), *d_counts = device_copy(counts);
        for (double row : rows) {
          const int layers = static_cast<int>(row / kLayerRowBytes);
          const int gathered = slice_layers > 0 ? slice_layers : layers;  // layers of each row the gather reads
          const std::size_t slot_elems = static_cast<std::size_t>(gathered) * requests * kKvHeads * (loads + 1) * kHeadDim;
          std::uint16_t *k_slots = nullptr, *v_slots = nullptr;
          SPECONTEXT_CUDA_CHECK(cudaMalloc(&k_slots, slot_elems * 2));
          SPECONTEXT_CUDA_CHECK(cudaMalloc(&v_slots, slot_elems * 2));
          std::vector<std::int64_t> points;  // host_positions of each point
          if (positions_list.empty()) {
            for (double gib : footprints_gib) {
              points.push_back(static_cast<std::int64_t>(gib * (1ull << 30) / footprint(1, requests, row)));
            }
          } else {
            for (double p : positions_list) points.push_back(static_cast<std::int64_t>(p));
          }
          for (const std::int64_t positions : points) {
            std::vector<float> ms;
            for (int rep = -1; rep < reps; ++rep) {  // rep -1: warm-up
              std::vector<std::int32_t> pos(load_slots.size());
              std::uniform_int_distribution<std::int64_t> pick(0, positions - 1);
              for (auto& p : pos) p = static_cast<std::int32_t>(pick(rng));
              std::int32_t* d_pos = device_copy(pos);
              specontext::kernels::ElasticGatherParams g;
              g.host_kv = host_device;
              g.host_positions = positions;
              g.host_layers = layers;
              g.layer_begin = 0;
              g.layer_end = gathered;
              g.k_slots = k_slots;
              g.v_slots = v_slots;
              g.slots = d_slots;
              g.load_positions = d_pos;
              g.load_slots = d_load_slots;
              g.load_counts = d_counts;
              g.requests = g.max_requests = requests;
              g.kv_heads = kKvHeads;
              g.slot_count = loads;
              g.head_dim = kHeadDim;
              g.max_blocks = blocks;
              SPECONTEXT_CUDA_CHECK(cudaEventRecord(start, stream));
              specontext::kernels::launch_elastic_gather(g, stream);
              SPECONTEXT_CUDA_CHECK(cudaEventRecord(stop, stream));
              SPECONTEXT_CUDA_CHECK(cudaEventSynchronize(stop));
              float t = 0;
              SPECONTEXT_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
              if (rep >= 0) ms.push_back(t);
              SPECONTEXT_CUDA_CHECK(cudaFree(d_pos));
            }
            std::sort(ms.begin(), ms.end());
            const double median = ms[ms.size() / 2], read_row = gathered * kLayerRowBytes, moved = static_cast<double>(load_slots.size()) * read_row;
            std::printf("{\"gpu\": \"%s\", \"footprint_bytes\": %.0f, \"row_bytes\": %.0f, \"read_bytes_per_row\": %.0f, \"requests\": %d, "
                        "\"positions\": %lld, \"loads\": %d, \"rows\": %zu, \"blocks\": %d, \"reps\": %d, "
                        "\"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"gbps\": %.2f, \"host_pages\": \"%s\", "
                        "\"huge_page_bytes\": %.0f}\n",
                        prop.name, footprint(static_cast<double>(positions), requests, row), row, read_row, requests,
                        static_cast<long long>(positions), loads, load_slots.size(), blocks, reps, median, ms.front(), ms.back(),
                        moved / (median * 1e-3) / 1e9, specontext::to_string(pages), huge_bytes);
            std::fflush(stdout);
          }
          SPECONTEXT_CUDA_CHECK(cudaFree(k_slots));
          SPECONTEXT_CUDA_CHECK(cudaFree(v_slots));
        }
        SPECONTEXT_CUDA_CHECK(cudaFree(d_slots));
        SPECONTEXT_CUDA_CHECK(cudaFree(d_load_slots));
        SPECONTEXT_CUDA_CHECK(cudaFree(d_counts));
      }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "gather_footprint: error: " << e.what() << "\n";
    return 2;
  }
}
