// The engine's elastic gather (kernels/elastic_gather.cuh) reading random rows from a pinned, mapped
// host buffer, alone on the GPU, as the buffer grows: GB/s per (host footprint, row size).
//
// Why: on the H200 the engine's synchronous loads (512 B rows) ran at ~45 GB/s with a 4.3 GB host
// buffer and ~23 GB/s with 17 GB (sim/VALIDATION.md, "What misses"), while the simulator's link rate
// depends on the row size only. If the rate falls with the footprint here too, the cause is the
// reads' address translation, not the engine's step, and the simulator needs a footprint term.
//
//   gather_footprint [--footprints-gib 1,2,4,8,16,32] [--rows 512,2048] [--blocks 32] [--reps 5]
//
// One buffer of the largest footprint is pinned once (~0.5 s per GiB); a smaller footprint uses its
// first bytes (host_positions shrinks, so every row lies in that prefix). Each gather moves what one
// layer group of a SpeContext step at R = 32, 8 KV heads, B = 2048, overlap 0.8 moves: 410 rows per
// (request, head), random positions, fresh lists for each repetition. Prints one JSON line per point.
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

#include "kernels/cuda_check.cuh"
#include "kernels/elastic_gather.cuh"

namespace {

constexpr int kRequests = 32, kKvHeads = 8, kHeadDim = 128, kLoads = 410;
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
  std::vector<double> footprints_gib = {1, 2, 4, 8, 16, 32}, rows = {512, 2048};
  int blocks = 32, reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(a + ": needs a value (flags: --footprints-gib, --rows, --blocks, --reps)");
    const std::string v = argv[++i];
    if (a == "--footprints-gib") footprints_gib = parse_list(a, v);
    else if (a == "--rows") rows = parse_list(a, v);
    else if (a == "--blocks") blocks = parse_count(a, v);
    else if (a == "--reps") reps = parse_count(a, v);
    else throw std::invalid_argument("unknown flag '" + a + "' (flags: --footprints-gib, --rows, --blocks, --reps)");
  }
  for (double r : rows)
    if (r != kLayerRowBytes && r != 2 * kLayerRowBytes && r != 4 * kLayerRowBytes && r != 8 * kLayerRowBytes)
      throw std::invalid_argument("--rows: each must be 512, 1024, 2048 or 4096 (1, 2, 4 or 8 layers' K|V at head_dim 128), got " +
                                  std::to_string(r));
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) throw std::runtime_error("no CUDA device");
  cudaDeviceProp prop{};
  SPECONTEXT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

  const double max_bytes = *std::max_element(footprints_gib.begin(), footprints_gib.end()) * (1ull << 30);
  std::uint16_t* host = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), static_cast<std::size_t>(max_bytes), cudaHostAllocMapped));
  std::uint16_t* host_device = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&host_device), host, 0));

  std::vector<std::int32_t> slots(kRequests), load_slots(static_cast<std::size_t>(kRequests) * kKvHeads * kLoads),
      counts(static_cast<std::size_t>(kRequests) * kKvHeads, kLoads);
  for (int i = 0; i < kRequests; ++i) slots[static_cast<std::size_t>(i)] = i;
  for (std::size_t b = 0; b < counts.size(); ++b)
    for (int k = 0; k < kLoads; ++k) load_slots[b * kLoads + static_cast<std::size_t>(k)] = k;
  std::int32_t *d_slots = device_copy(slots), *d_load_slots = device_copy(load_slots), *d_counts = device_copy(counts);
  cudaStream_t stream = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t start = nullptr, stop = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&start));
  SPECONTEXT_CUDA_CHECK(cudaEventCreate(&stop));
  std::mt19937_64 rng(1);

  for (double row : rows) {
    const int layers = static_cast<int>(row / kLayerRowBytes);
    const std::size_t slot_elems = static_cast<std::size_t>(layers) * kRequests * kKvHeads * (kLoads + 1) * kHeadDim;
    std::uint16_t *k_slots = nullptr, *v_slots = nullptr;
    SPECONTEXT_CUDA_CHECK(cudaMalloc(&k_slots, slot_elems * 2));
    SPECONTEXT_CUDA_CHECK(cudaMalloc(&v_slots, slot_elems * 2));
    for (double gib : footprints_gib) {
      const double bytes = gib * (1ull << 30);
      const auto positions = static_cast<std::int64_t>(bytes / (static_cast<double>(kRequests) * kKvHeads * row));
      if (positions < kLoads) throw std::invalid_argument("--footprints-gib: " + std::to_string(gib) + " GiB holds too few positions");
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
        g.layer_end = layers;
        g.k_slots = k_slots;
        g.v_slots = v_slots;
        g.slots = d_slots;
        g.load_positions = d_pos;
        g.load_slots = d_load_slots;
        g.load_counts = d_counts;
        g.requests = g.max_requests = kRequests;
        g.kv_heads = kKvHeads;
        g.slot_count = kLoads;
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
      const double median = ms[ms.size() / 2], moved = static_cast<double>(load_slots.size()) * row;
      std::printf("{\"gpu\": \"%s\", \"footprint_bytes\": %.0f, \"row_bytes\": %.0f, \"rows\": %zu, \"blocks\": %d, \"reps\": %d, "
                  "\"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"gbps\": %.2f}\n",
                  prop.name, static_cast<double>(positions) * kRequests * kKvHeads * row, row, load_slots.size(), blocks, reps, median,
                  ms.front(), ms.back(), moved / (median * 1e-3) / 1e9);
      std::fflush(stdout);
    }
    SPECONTEXT_CUDA_CHECK(cudaFree(k_slots));
    SPECONTEXT_CUDA_CHECK(cudaFree(v_slots));
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
