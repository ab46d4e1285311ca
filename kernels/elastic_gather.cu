#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/elastic_gather.cuh"
#include "kernels/elastic_plan.cuh"

namespace specontext::kernels {
namespace {

// Why this shape:
// - Reads from mapped host memory take ~1-2 us each (PCIe round trip), so the rate is bytes in
//   flight / latency: ~50 GB/s needs ~100 KB in flight. H200.md's measured gather kept one
//   16-byte load per thread in flight and needed 66+ blocks for 2 KiB rows; here each thread
//   issues kUnroll independent 16-byte loads before its first store (32 KB in flight per
//   block), so a few blocks should already cover the link and the cap can stay small.
// - One flat index space of 16-byte vectors over all loaded (i, g, k) rows: consecutive threads
//   read consecutive 16 bytes of the same contiguous host run (every layer's K and V of one
//   position), so a warp's load is 512 contiguous bytes whatever head_dim and the layer count
//   are, and no lane idles on short rows. The index -> (i, g, k) map needs the exclusive prefix
//   of the load counts: each block scans them itself in chunks of kChunk (request, head) pairs
//   (a few KB from L2; no second kernel and no global workspace, so the launch is capturable
//   as is) and binary-searches the chunk's prefix in shared memory per vector.
// - Host reads use ld.global.cs (streamed, read once); slot-buffer stores are plain: attention
//   reads them next, from L2 if they are still there.
constexpr int kThreads = kElasticCopyThreads;
constexpr int kUnroll = 8;
constexpr int kChunk = 1024;  // (request, head) pairs scanned at once
constexpr int kPerThread = kChunk / kThreads;
static_assert(kChunk % kThreads == 0 && kThreads % 32 == 0 && kThreads <= 1024, "scan layout");

// Exclusive prefix sum of v over the block (blockDim.x == kThreads); *total gets the block's sum.
// Two barriers; every thread must call it.
__device__ int block_exclusive_scan(int v, int* total) {
  __shared__ int warp_sums[32];
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = v;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const int x = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += x;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = lane < kWarps ? warp_sums[lane] : 0;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const int x = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += x;
    }
    warp_sums[lane] = w;
  }
  __syncthreads();
  *total = warp_sums[kWarps - 1];
  return (warp > 0 ? warp_sums[warp - 1] : 0) + incl - v;
}

// First e in [0, n) with incl[e] > x (n if none).
__device__ __forceinline__ int upper_bound(const int* incl, int n, int x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (incl[mid] <= x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Grid-stride over max_blocks (or fewer) blocks of kThreads; see the header for what it copies.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) elastic_gather_kernel(ElasticGatherParams p) {
  constexpr int kVecs = kHeadDim / 8;  // 16-byte vectors per K (or V) row
  __shared__ int incl[kChunk];         // inclusive prefix of the chunk's clamped load counts

  const int n = p.slot_count;
  const int pairs = p.requests * p.kv_heads;
  const int vpr = (p.layer_end - p.layer_begin) * 2 * kVecs;  // vectors per loaded position
  const std::int64_t grid = static_cast<std::int64_t>(gridDim.x) * kThreads;
  const std::int64_t gt = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t host_row = static_cast<std::int64_t>(p.host_layers) * 2 * kHeadDim;  // one position
  const std::int64_t slot_head = static_cast<std::int64_t>(n + 1) * kHeadDim;

  std::int64_t base = 0;  // vectors of the chunks before this one (the index space is global)
  for (int c0 = 0; c0 < pairs; c0 += kChunk) {
    const int cn = min(kChunk, pairs - c0);
    int local[kPerThread];
    int sum = 0;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int e = threadIdx.x * kPerThread + k;
      local[k] = e < cn ? min(max(p.load_counts[c0 + e], 0), n) : 0;
      sum += local[k];
    }
    int rows = 0;
    int run = block_exclusive_scan(sum, &rows);
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      run += local[k];
      incl[threadIdx.x * kPerThread + k] = run;
    }
    __syncthreads();

    const std::int64_t total = static_cast<std::int64_t>(rows) * vpr;
    std::int64_t v = ((gt - base) % grid + grid) % grid;  // this thread's first index in the chunk
    for (; v < total; v += grid * kUnroll) {
      uint4 data[kUnroll];
      std::uint16_t* dst[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        dst[u] = nullptr;
        const std::int64_t vi = v + u * grid;
        if (vi >= total) continue;
        const int row = static_cast<int>(vi / vpr);
        const int within = static_cast<int>(vi - static_cast<std::int64_t>(row) * vpr);
        const int e = upper_bound(incl, cn, row);
        const int k = row - (e > 0 ? incl[e - 1] : 0);
        const int pair = c0 + e;
        const int i = pair / p.kv_heads, g = pair % p.kv_heads;
        const int r = p.slots[i];
        const std::int64_t at = static_cast<std::int64_t>(pair) * n + k;
        const int pos = p.load_positions[at];
        const int slot = p.load_slots[at];
        if (r < 0 || r >= p.max_requests || pos < 0 || pos >= p.host_positions || slot < 0 || slot >= n) continue;
        const std::int64_t rg = static_cast<std::int64_t>(r) * p.kv_heads + g;
        const std::uint16_t* src = p.host_kv + (rg * p.host_positions + pos) * host_row +
                                   static_cast<std::int64_t>(p.layer_begin) * 2 * kHeadDim + within * 8;
        data[u] = __ldcs(reinterpret_cast<const uint4*>(src));
        const int layer = p.layer_begin + within / (2 * kVecs);
        const int part = within % (2 * kVecs);  // < kVecs: K, else V
        std::uint16_t* buf = part < kVecs ? p.k_slots : p.v_slots;
        dst[u] = buf + (static_cast<std::int64_t>(layer) * p.max_requests * p.kv_heads + rg) * slot_head +
                 static_cast<std::int64_t>(slot) * kHeadDim + (part % kVecs) * 8;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (dst[u] != nullptr) *reinterpret_cast<uint4*>(dst[u]) = data[u];
    }
    base += total;
    __syncthreads();  // every thread is done with incl before the next chunk overwrites it
  }
}

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) elastic_store_current_kernel(ElasticStoreCurrentParams p) {
  constexpr int kVecs = kHeadDim / 8;
  const int n = p.slot_count;
  const int vpr = (p.layer_end - p.layer_begin) * 2 * kVecs;
  const std::int64_t total = static_cast<std::int64_t>(p.requests) * p.kv_heads * vpr;
  const std::int64_t grid = static_cast<std::int64_t>(gridDim.x) * kThreads;
  const std::int64_t host_row = static_cast<std::int64_t>(p.host_layers) * 2 * kHeadDim;
  const std::int64_t slot_head = static_cast<std::int64_t>(n + 1) * kHeadDim;

  for (std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; v < total; v += grid * kUnroll) {
    uint4 data[kUnroll];
    std::uint16_t* dst[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      dst[u] = nullptr;
      const std::int64_t vi = v + u * grid;
      if (vi >= total) continue;
      const std::int64_t pair = vi / vpr;
      const int within = static_cast<int>(vi - pair * vpr);
      const int i = static_cast<int>(pair / p.kv_heads), g = static_cast<int>(pair % p.kv_heads);
      const int r = p.slots[i];
      const int pos = p.current[i];
      if (r < 0 || r >= p.max_requests || pos < 0 || pos >= p.host_positions) continue;
      const std::int64_t rg = static_cast<std::int64_t>(r) * p.kv_heads + g;
      const int layer = p.layer_begin + within / (2 * kVecs);
      const int part = within % (2 * kVecs);
      const std::uint16_t* buf = part < kVecs ? p.k_slots : p.v_slots;
      const std::uint16_t* src = buf + (static_cast<std::int64_t>(layer) * p.max_requests * p.kv_heads + rg) * slot_head +
                                 static_cast<std::int64_t>(n) * kHeadDim + (part % kVecs) * 8;
      data[u] = *reinterpret_cast<const uint4*>(src);
      dst[u] = p.host_kv + (rg * p.host_positions + pos) * host_row + static_cast<std::int64_t>(p.layer_begin) * 2 * kHeadDim +
               within * 8;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (dst[u] != nullptr) *reinterpret_cast<uint4*>(dst[u]) = data[u];
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }
bool aligned4(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 4 == 0; }

#define COPY_REQUIRE(op, ok, what)                                    \
  do {                                                                \
    if (!(ok)) throw std::invalid_argument(std::string(op) + ": " + (what)); \
  } while (0)

// The layout fields both launchers share (ElasticGatherParams, ElasticStoreCurrentParams).
template <class Params>
void check_layout(const char* op, const Params& p) {
  COPY_REQUIRE(op, p.requests >= 0, "requests must be >= 0, got " + std::to_string(p.requests));
  COPY_REQUIRE(op, p.kv_heads > 0, "kv_heads must be > 0, got " + std::to_string(p.kv_heads));
  COPY_REQUIRE(op, p.max_requests > 0 && p.max_requests >= p.requests,
               "max_requests (" + std::to_string(p.max_requests) + ") must be > 0 and >= requests (" + std::to_string(p.requests) + ")");
  COPY_REQUIRE(op, p.slot_count > 0 && p.slot_count <= kElasticPlanMaxSlots,
               "slot_count must be in 1 .. " + std::to_string(kElasticPlanMaxSlots) + ", got " + std::to_string(p.slot_count));
  COPY_REQUIRE(op, p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128,
               "head_dim " + std::to_string(p.head_dim) + " is not supported (32, 64 or 128)");
  COPY_REQUIRE(op, p.host_positions > 0 && p.host_positions <= INT_MAX,
               "host_positions must be in 1 .. 2^31 - 1, got " + std::to_string(p.host_positions));
  COPY_REQUIRE(op, p.host_layers > 0, "host_layers must be > 0, got " + std::to_string(p.host_layers));
  COPY_REQUIRE(op, p.layer_begin >= 0 && p.layer_begin <= p.layer_end && p.layer_end <= p.host_layers,
               "layer range [" + std::to_string(p.layer_begin) + ", " + std::to_string(p.layer_end) + ") is not within [0, " +
                   std::to_string(p.host_layers) + ")");
  COPY_REQUIRE(op, p.max_blocks >= 1, "max_blocks must be >= 1, got " + std::to_string(p.max_blocks));
  COPY_REQUIRE(op, static_cast<std::int64_t>(p.requests) * p.kv_heads <= INT_MAX, "requests * kv_heads is too large");
  COPY_REQUIRE(op, p.host_kv && p.k_slots && p.v_slots && p.slots, "a tensor pointer is null");
  COPY_REQUIRE(op, aligned16(p.host_kv) && aligned16(p.k_slots) && aligned16(p.v_slots),
               "host_kv, k_slots and v_slots must be 16-byte aligned");
  COPY_REQUIRE(op, aligned4(p.slots), "slots must be 4-byte aligned");
}

// Blocks for `vectors` 16-byte copies at most, capped by max_blocks: no block without work.
unsigned grid_for(std::int64_t vectors, int max_blocks) {
  const std::int64_t per_block = static_cast<std::int64_t>(kThreads) * kUnroll;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>(max_blocks, (vectors + per_block - 1) / per_block)));
}

}  // namespace

void launch_elastic_gather(const ElasticGatherParams& p, cudaStream_t stream) {
  constexpr const char* kOp = "elastic_gather";
  check_layout(kOp, p);
  COPY_REQUIRE(kOp, p.load_positions && p.load_slots && p.load_counts, "a tensor pointer is null");
  COPY_REQUIRE(kOp, aligned4(p.load_positions) && aligned4(p.load_slots) && aligned4(p.load_counts),
               "load_positions, load_slots and load_counts must be 4-byte aligned");
  if (p.requests == 0 || p.layer_begin == p.layer_end) return;
  // The loads are on the device: size the grid by the most the plan can produce.
  const std::int64_t vpr = static_cast<std::int64_t>(p.layer_end - p.layer_begin) * 2 * (p.head_dim / 8);
  const unsigned blocks = grid_for(static_cast<std::int64_t>(p.requests) * p.kv_heads * p.slot_count * vpr, p.max_blocks);
  switch (p.head_dim) {
    case 32: elastic_gather_kernel<32><<<blocks, kThreads, 0, stream>>>(p); break;
    case 64: elastic_gather_kernel<64><<<blocks, kThreads, 0, stream>>>(p); break;
    default: elastic_gather_kernel<128><<<blocks, kThreads, 0, stream>>>(p); break;
  }
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

void launch_elastic_store_current(const ElasticStoreCurrentParams& p, cudaStream_t stream) {
  constexpr const char* kOp = "elastic_store_current";
  check_layout(kOp, p);
  COPY_REQUIRE(kOp, p.current != nullptr, "a tensor pointer is null");
  COPY_REQUIRE(kOp, aligned4(p.current), "current must be 4-byte aligned");
  if (p.requests == 0 || p.layer_begin == p.layer_end) return;
  const std::int64_t vpr = static_cast<std::int64_t>(p.layer_end - p.layer_begin) * 2 * (p.head_dim / 8);
  const unsigned blocks = grid_for(static_cast<std::int64_t>(p.requests) * p.kv_heads * vpr, p.max_blocks);
  switch (p.head_dim) {
    case 32: elastic_store_current_kernel<32><<<blocks, kThreads, 0, stream>>>(p); break;
    case 64: elastic_store_current_kernel<64><<<blocks, kThreads, 0, stream>>>(p); break;
    default: elastic_store_current_kernel<128><<<blocks, kThreads, 0, stream>>>(p); break;
  }
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
