#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention_checks.hpp"
#include "kernels/cp_async.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/device_properties.cuh"
#include "kernels/decode_attention.cuh"
#include "kernels/programmatic_launch.cuh"

namespace specontext::kernels {
namespace {

// Why this shape (H200: 4.8 TB/s HBM, 132 SMs):
// - Decode attention reads every valid K/V byte once and does ~2 FLOP per byte per query head,
//   so it is purely HBM-bound; the only goals are (a) touch each K/V byte once per GQA group,
//   (b) keep enough bytes in flight on every SM, (c) spend few instructions per byte.
// - (b) The first version loaded K/V straight into registers; its bytes in flight were capped by
//   the register file (q and the accumulators of the whole group live there too) and it reached
//   ~61% of HBM peak at R=32, S=16384. Now every warp streams its keys through a private ring of
//   kStages shared-memory tiles filled by cp.async (16 bytes a lane; zero-filled past the length,
//   so no invalid byte is ever read): kStages - 1 tiles of 4 KB (2 KB of K, 2 KB of V) per warp
//   are in flight ahead of the one being used, without holding registers (~150 KB per SM). The
//   ring is private, so __syncwarp orders it (no block barrier in the main loop).
// - (c) A "lane group" of head_dim / 8 lanes owns one key at a time; each lane reads 16 bytes
//   (8 bf16) of its key's K and V rows from shared memory (a warp's read covers consecutive
//   rows: conflict-free), and a lane group takes kKeysPerGroup keys of a tile at once, so the
//   online-softmax rescale is paid once per 4 keys.
// - All query heads of the group live in registers (their 8-element slice), so one K/V read
//   feeds `group` dot products; the scale (times log2 e) is folded into q and the softmax uses
//   exp2, in fp32 throughout. Groups larger than kMaxGroup are split over blockIdx.y (K/V then
//   read once per batch).
// - Split-K: the launch picks the number of chunks so that requests * kv_heads * chunks blocks
//   fill a few waves of resident blocks (every SM busy, few partial results to merge); small
//   problems get few chunks of at least kMinChunk keys, and a single chunk skips the merge. The
//   workspace bound does not depend on that choice (at most ~kTargetRequestChunks + requests
//   rows per query head).
// - Sparse mode (an index list per request and KV head) is the same kernel with the SparseKeys
//   policy instead of DenseKeys: a tile holds kTileKeys consecutive *list entries*, so only the
//   source address of each 16-byte piece changes (row list[key] instead of row key). Lane l
//   loads the row of entry l % kTileKeys of a tile one loop iteration before the tile is issued
//   (the load's latency hides behind a tile of work instead of stalling the issue), and issue()
//   takes each piece's row from the lane holding it with a shuffle: one index register per lane,
//   one global load per key per lane group. Those copies carry no L2::256B prefetch: rows are
//   scattered, and with 64- or 128-byte rows (head_dim 32, 64) the prefetch would pull unlisted
//   neighbours from HBM; a whole row is in one warp's request anyway.
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkQuantum = 64;            // keys; chunk lengths are multiples of it
constexpr int kMinChunk = 128;               // keys; shorter chunks cost more merging than they save
constexpr int kTargetRequestChunks = 1024;  // requests * chunks at most (bounds the workspace)
constexpr int kWaves = 4;                    // split blocks aimed at, in waves of resident blocks
constexpr int kKeysPerGroup = 4;             // keys a lane group takes from each tile
constexpr int kTileBytes = 2048;             // K (and V) bytes of one warp's tile
constexpr int kMergeThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

// Pipeline depth and residency per group size. Shared memory per block is kWarps * kStages * 2 *
// kTileBytes: 64 KB for groups up to 4 (3 blocks = 192 KB of an SM's 227 KB; register cap 168)
// and 96 KB for up to 8 (2 blocks; the 64 q and 64 accumulator registers need the 255 cap). Either
// way each warp keeps 3 or 5 tiles in flight ahead of the one in use.
template <int kMaxGroup>
struct SplitConfig {
  static constexpr int kStages = kMaxGroup > 4 ? 6 : 4;
  static constexpr int kMinBlocks = kMaxGroup > 4 ? 2 : 3;
  static constexpr int kWarpBytes = kStages * 2 * kTileBytes;
  static constexpr int kSmemBytes = kWarps * kWarpBytes;
};

int chunk_cap(int requests, int max_context) {
  const int by_length = (max_context + kChunkQuantum - 1) / kChunkQuantum;
  const int by_requests = std::max(1, (kTargetRequestChunks + requests - 1) / requests);
  return std::max(1, std::min(by_length, by_requests));
}

// 2^x as the hardware gives it (MUFU.EX2, subnormal results flushed to zero): exp2f adds a
// rescaling around it for subnormals, ~3 instructions per weight that no softmax weight needs.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// What the kernels take by value: DecodeAttentionParams as it was before the sparse fields, same
// fields in the same order. Passing the public struct itself (176 bytes since) made NVVM lower the
// by-value parameter differently (+4 registers on the group-4 kernels, +10 on the merge); with
// this copy the dense kernels compile exactly as before. The sparse fields travel in SparseKeys.
struct KernelParams {
  const std::uint16_t* q;
  std::int64_t q_row_stride;
  const std::uint16_t* k_cache;
  const std::uint16_t* v_cache;
  std::int64_t kv_request_stride;
  std::int64_t kv_head_stride;
  const std::int32_t* slots;
  const std::int32_t* lengths;
  std::uint16_t* out;
  std::int64_t out_row_stride;
  float* workspace;
  std::size_t workspace_bytes;
  int requests;
  int q_heads;
  int kv_heads;
  int head_dim;
  int max_context;
  int max_length;
  float scale;
};
static_assert(sizeof(KernelParams) == 128, "the dense kernels' parameter as before the sparse mode");

KernelParams kernel_params(const DecodeAttentionParams& p) {
  return {p.q,         p.q_row_stride, p.k_cache, p.v_cache,  p.kv_request_stride, p.kv_head_stride, p.slots,
          p.lengths,   p.out,          p.out_row_stride,      p.workspace,         p.workspace_bytes, p.requests,
          p.q_heads,   p.kv_heads,     p.head_dim,            p.max_context,       p.max_length,      p.scale};
}

// Key-source policies (the split and merge kernels are templates on them). Key k of (request r,
// KV head g) is cache row k, of lengths[r] keys (dense), or cache row list(r, g)[k], of
// count(r, g) keys (sparse).
struct DenseKeys {
  static constexpr bool kSparse = false;
  __device__ __forceinline__ int count(const KernelParams& p, int r, int) const { return p.lengths[r]; }
};
struct SparseKeys {
  static constexpr bool kSparse = true;
  const std::int32_t* indices;
  std::int64_t index_request_stride, index_head_stride;
  const std::int32_t* counts;
  std::int64_t count_request_stride, count_head_stride;
  __device__ __forceinline__ int count(const KernelParams&, int r, int g) const {
    return counts[r * count_request_stride + g * count_head_stride];
  }
  __device__ __forceinline__ const std::int32_t* list(int r, int g) const {
    return indices + r * index_request_stride + g * index_head_stride;
  }
};

// Keys of (request r, KV head kvh), clamped to [0, max_context].
template <class Keys>
__device__ __forceinline__ int clamp_length(const KernelParams& p, const Keys& keys, int r, int kvh) {
  const int len = keys.count(p, r, kvh);
  return len < 0 ? 0 : (len > p.max_context ? p.max_context : len);
}

// Grid: x = chunk, y = kv_head * head_batches + batch, z = request; dynamic shared memory
// SplitConfig<kMaxGroup>::kSmemBytes. Writes, per query head of the batch, the chunk's max (log2
// units), sum and unnormalised accumulator to the workspace, or the normalised output directly
// when the launch has a single chunk. Keys: DenseKeys or SparseKeys (which cache rows are keys).
template <int kHeadDim, int kMaxGroup, class Keys>
__global__ void __launch_bounds__(kThreads, SplitConfig<kMaxGroup>::kMinBlocks)
    decode_split_kernel(KernelParams p, Keys keys, int group, int head_batches, int chunk, int nchunks) {
  constexpr bool kSparse = Keys::kSparse;
  using Cfg = SplitConfig<kMaxGroup>;
  constexpr int kStages = Cfg::kStages;
  constexpr int kDims = 8;                                   // dims of a key per lane
  constexpr int kLanes = kHeadDim / kDims;                   // lanes per key
  constexpr int kGroupsPerWarp = 32 / kLanes;                // keys a warp reads per instruction
  constexpr int kTileKeys = kGroupsPerWarp * kKeysPerGroup;  // 8, 16 or 32 keys
  constexpr int kTileElems = kTileBytes / 2;
  constexpr int kPiecesPerLane = kTileBytes / 16 / 32;  // 16-byte copies per lane per tensor
  static_assert(kTileKeys * kHeadDim * 2 == kTileBytes, "a tile holds kTileBytes of K");
  static_assert(kChunkQuantum % kTileKeys == 0, "chunks hold whole tiles");
  static_assert(kMaxGroup * kHeadDim * 4 <= Cfg::kWarpBytes, "the epilogue reuses a warp's ring");

  extern __shared__ __align__(16) unsigned char smem[];

  wait_for_previous_grid();    // launched programmatically: q, the new key and the lengths come from the kernels before
  allow_next_grid_to_start();  // the merge (or, with one chunk, the O projection) may place its blocks

  const int r = blockIdx.z;
  const int kvh = blockIdx.y / head_batches;
  const int h0 = kvh * group + (blockIdx.y % head_batches) * kMaxGroup;
  const int nh = min(kMaxGroup, kvh * group + group - h0);
  const int c = blockIdx.x;
  const int len = clamp_length(p, keys, r, kvh);
  const int key0 = c * chunk;
  const int key1 = min(key0 + chunk, len);
  const bool direct = nchunks == 1;
  const int tid = threadIdx.x;

  if (key0 >= key1) {
    // Nothing valid in this chunk; the merge kernel only reads chunks below ceil(len / chunk).
    // A request with no keys at all gets zeros.
    if (direct && c == 0) {
      for (int i = tid; i < nh * kHeadDim; i += kThreads)
        p.out[r * p.out_row_stride + static_cast<std::int64_t>(h0) * kHeadDim + i] = 0;
    }
    return;
  }

  const int warp = tid / 32, lane = tid % 32;
  const int li = lane % kLanes, gw = lane / kLanes;
  const int d0 = li * kDims;

  // Tiles of kTileKeys consecutive keys; warp w takes tiles w, w + kWarps, ... of the chunk.
  const std::int64_t slot = p.slots[r];
  const std::int64_t base = slot * p.kv_request_stride + kvh * p.kv_head_stride;
  const std::uint16_t* kg = p.k_cache + base;
  const std::uint16_t* vg = p.v_cache + base;
  std::uint16_t* ring = reinterpret_cast<std::uint16_t*>(smem + warp * Cfg::kWarpBytes);  // stage s: K, V
  const int ntiles = (key1 - key0 + kTileKeys - 1) / kTileKeys;
  const int my_tiles = warp < ntiles ? (ntiles - warp + kWarps - 1) / kWarps : 0;
  // Sparse: this lane's row of warp tile j, the row of its key lane % kTileKeys (0 past key1,
  // where the list may end). Its first use is the next loop iteration's issue.
  const std::int32_t* list = nullptr;
  if constexpr (kSparse) list = keys.list(r, kvh);
  auto tile_row = [&](int j) {
    const int key = key0 + (j * kWarps + warp) * kTileKeys + lane % kTileKeys;
    return key < key1 ? __ldg(list + key) : 0;
  };
  // rows (sparse only): tile_row(j) of this lane. Piece i of a lane is dims d0 .. d0 + 7 of tile
  // key gw + i * kGroupsPerWarp, whose row lane gw + i * kGroupsPerWarp holds.
  auto issue = [&](int j, int rows) {
    const int tkey0 = key0 + (j * kWarps + warp) * kTileKeys;
    if constexpr (kSparse) {
      // Rows outside [0, max_context) are clamped into it: no read outside the cache row.
      rows = static_cast<int>(min(static_cast<unsigned>(rows), static_cast<unsigned>(p.max_context - 1)));
      std::uint16_t* sk = ring + (j % kStages) * 2 * kTileElems;
      const std::uint16_t* kt = kg + d0;  // this lane's dims of row 0
      const std::uint16_t* vt = vg + d0;
      const bool full = tkey0 + kTileKeys <= key1;  // uniform
#pragma unroll
      for (int i = 0; i < kPiecesPerLane; ++i) {
        const int e = lane + 32 * i;  // 16-byte piece of the tile: tile key e / kLanes, dims d0 ..
        const std::int64_t at = static_cast<std::int64_t>(__shfl_sync(0xffffffffu, rows, e / kLanes)) * kHeadDim;
        const bool valid = full || tkey0 + e / kLanes < key1;
        cp_async16<false>(sk + e * 8, valid ? kt + at : kg, valid);
        cp_async16<false>(sk + kTileElems + e * 8, valid ? vt + at : vg, valid);
      }
    } else {
      const std::uint16_t* kt = kg + static_cast<std::int64_t>(tkey0) * kHeadDim;  // tiles are contiguous
      const std::uint16_t* vt = vg + static_cast<std::int64_t>(tkey0) * kHeadDim;
      std::uint16_t* sk = ring + (j % kStages) * 2 * kTileElems;
      if (tkey0 + kTileKeys <= key1) {  // every tile but a chunk's last: no masking (uniform branch)
#pragma unroll
        for (int i = 0; i < kPiecesPerLane; ++i) {
          const int e = lane + 32 * i;  // 16-byte piece of the tile
          cp_async16(sk + e * 8, kt + e * 8, true);
          cp_async16(sk + kTileElems + e * 8, vt + e * 8, true);
        }
      } else {
#pragma unroll
        for (int i = 0; i < kPiecesPerLane; ++i) {
          const int e = lane + 32 * i;
          const bool valid = tkey0 + e / kLanes < key1;
          cp_async16(sk + e * 8, valid ? kt + e * 8 : kg, valid);
          cp_async16(sk + kTileElems + e * 8, valid ? vt + e * 8 : vg, valid);
        }
      }
    }
  };
  // Fill the ring first (one commit group per tile, empty ones included, so the count of
  // pending groups in the loop is fixed) and only then load q: its latency overlaps the copies.
  // Sparse: the rows of the first kStages tiles are loaded together before any issue.
  int rows[kStages] = {};
  if constexpr (kSparse) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) rows[s] = tile_row(s);
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < my_tiles) issue(s, rows[s]);
    cp_async_commit();
  }
  int next_rows = rows[kStages - 1];  // sparse: tile_row of the next tile to issue

  const float qscale = p.scale * kLog2e;
  float q[kMaxGroup][kDims];
  const std::uint16_t* qrow = p.q + r * p.q_row_stride + static_cast<std::int64_t>(h0) * kHeadDim + d0;
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < nh) {
      unpack8(*reinterpret_cast<const uint4*>(qrow + g * kHeadDim), q[g]);
#pragma unroll
      for (int j = 0; j < kDims; ++j) q[g][j] *= qscale;
    } else {
#pragma unroll
      for (int j = 0; j < kDims; ++j) q[g][j] = 0.0f;
    }
  }

  float m[kMaxGroup], l[kMaxGroup], o[kMaxGroup][kDims];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < kDims; ++j) o[g][j] = 0.0f;
  }

  // my_tiles is uniform across the warp (the shuffles below need every lane); keys past key1
  // are masked (their tile rows are zeros).
  for (int j = 0; j < my_tiles; ++j) {
    __syncwarp();  // every lane is done with the stage tile j + kStages - 1 overwrites (j - 1's)
    if (j + kStages - 1 < my_tiles) issue(j + kStages - 1, next_rows);
    if constexpr (kSparse) next_rows = tile_row(j + kStages);  // used one iteration later
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // this lane's copies of tile j have landed
    __syncwarp();                  // and everybody's are visible

    const std::uint16_t* sk = ring + (j % kStages) * 2 * kTileElems + gw * kHeadDim + d0;
    const std::uint16_t* sv = sk + kTileElems;
    const int kfirst = key0 + (j * kWarps + warp) * kTileKeys + gw;  // key t: kfirst + t * kGroupsPerWarp
    uint4 kr[kKeysPerGroup], vr[kKeysPerGroup];
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) {
      kr[t] = *reinterpret_cast<const uint4*>(sk + t * kGroupsPerWarp * kHeadDim);
      vr[t] = *reinterpret_cast<const uint4*>(sv + t * kGroupsPerWarp * kHeadDim);
    }
    // Keys outer, heads inner: each K and V row is widened to fp32 once per tile, not per head.
    // Heads past nh have zero q and their state is never read.
    float s[kMaxGroup][kKeysPerGroup];
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) {
      float kf[kDims];
      unpack8(kr[t], kf);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        float acc = q[g][0] * kf[0];
#pragma unroll
        for (int j = 1; j < kDims; ++j) acc = fmaf(q[g][j], kf[j], acc);
        s[g][t] = acc;
      }
    }
#pragma unroll
    for (int off = kLanes / 2; off > 0; off /= 2)
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
        for (int t = 0; t < kKeysPerGroup; ++t) s[g][t] += __shfl_xor_sync(0xffffffffu, s[g][t], off);
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      float mt = m[g];
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
        if (kfirst + t * kGroupsPerWarp >= key1) s[g][t] = -INFINITY;
        mt = fmaxf(mt, s[g][t]);
      }
      // mt is -inf only when this lane group has seen no valid key yet; then nothing changes.
      const float mref = mt == -INFINITY ? 0.0f : mt;
      const float alpha = fast_exp2(m[g] - mref);
      float psum = 0.0f;
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
        s[g][t] = fast_exp2(s[g][t] - mref);  // now the weight
        psum += s[g][t];
      }
      l[g] = l[g] * alpha + psum;
      m[g] = mt;
#pragma unroll
      for (int j = 0; j < kDims; ++j) o[g][j] *= alpha;
    }
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) {
      float vf[kDims];
      unpack8(vr[t], vf);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g)
#pragma unroll
        for (int j = 0; j < kDims; ++j) o[g][j] = fmaf(s[g][t], vf[j], o[g][j]);
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending; the epilogue reuses the ring

  // Merge the lane groups of each warp (butterfly: every group ends with the warp's state).
#pragma unroll
  for (int off = kLanes; off < 32; off *= 2) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= nh) continue;
      const float mo = __shfl_xor_sync(0xffffffffu, m[g], off);
      const float lo = __shfl_xor_sync(0xffffffffu, l[g], off);
      const float mn = fmaxf(m[g], mo);
      const float mref = mn == -INFINITY ? 0.0f : mn;
      const float a = exp2f(m[g] - mref), b = exp2f(mo - mref);
      l[g] = l[g] * a + lo * b;
      m[g] = mn;
#pragma unroll
      for (int j = 0; j < kDims; ++j) o[g][j] = o[g][j] * a + __shfl_xor_sync(0xffffffffu, o[g][j], off) * b;
    }
  }

  // Each warp's accumulators go to the start of its own ring ([kMaxGroup][kHeadDim] floats).
  __shared__ float sm_m[kWarps][kMaxGroup];
  __shared__ float sm_l[kWarps][kMaxGroup];
  __syncwarp();
  float* sm_o = reinterpret_cast<float*>(ring);
  if (gw == 0) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= nh) continue;
#pragma unroll
      for (int j = 0; j < kDims; ++j) sm_o[g * kHeadDim + d0 + j] = o[g][j];
      if (li == 0) {
        sm_m[warp][g] = m[g];
        sm_l[warp][g] = l[g];
      }
    }
  }
  __syncthreads();

  const std::int64_t row0 = static_cast<std::int64_t>(r) * p.q_heads + h0;
  float* ws_acc = p.workspace;
  float* ws_ml = p.workspace + static_cast<std::int64_t>(p.requests) * p.q_heads * nchunks * kHeadDim;
  for (int i = tid; i < nh * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    const float mref = mx == -INFINITY ? 0.0f : mx;  // cannot be -inf: the chunk has a valid key
    float sum = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float e = exp2f(sm_m[w][g] - mref);
      sum += sm_l[w][g] * e;
      acc += reinterpret_cast<const float*>(smem + w * Cfg::kWarpBytes)[g * kHeadDim + d] * e;
    }
    if (direct) {
      const __nv_bfloat16 v = __float2bfloat16_rn(acc / sum);
      p.out[r * p.out_row_stride + static_cast<std::int64_t>(h0 + g) * kHeadDim + d] = __bfloat16_as_ushort(v);
    } else {
      const std::int64_t row = (row0 + g) * nchunks + c;
      ws_acc[row * kHeadDim + d] = acc;
      if (d == 0) {
        ws_ml[row * 2] = mx;
        ws_ml[row * 2 + 1] = sum;
      }
    }
  }
}

// Grid: x = query head, y = request; kMergeThreads threads. Combines the request's chunks:
// out = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c. The chunks are split over
// kMergeThreads / (head_dim / 4) slices that each read whole 16-byte pieces of their rows, so
// many rows are in flight at once (a serial walk over the chunks was latency-bound: ~8 us).
// The key count of query head h's (request, KV head) says how many chunks are valid.
template <class Keys>
__global__ void __launch_bounds__(kMergeThreads)
    decode_merge_kernel(KernelParams p, Keys keys, int chunk, int nchunks) {
  wait_for_previous_grid();    // launched programmatically: the split kernel's partial results
  allow_next_grid_to_start();  // the O projection may start streaming its weights
  const int h = blockIdx.x, r = blockIdx.y;
  const int hd = p.head_dim;
  const int tid = threadIdx.x, lane = tid % 32;
  int kvh = 0;
  if constexpr (Keys::kSparse) kvh = h / (p.q_heads / p.kv_heads);
  const int len = clamp_length(p, keys, r, kvh);
  const int n = min((len + chunk - 1) / chunk, nchunks);
  std::uint16_t* out = p.out + r * p.out_row_stride + static_cast<std::int64_t>(h) * hd;
  if (n == 0) {
    for (int d = tid; d < hd; d += kMergeThreads) out[d] = 0;
    return;
  }
  const std::int64_t row0 = (static_cast<std::int64_t>(r) * p.q_heads + h) * nchunks;
  const float* acc = p.workspace + row0 * hd;
  const float* ml = p.workspace + static_cast<std::int64_t>(p.requests) * p.q_heads * nchunks * hd + row0 * 2;

  // Every warp finds the global max and sum itself (n is at most ~1024: cheaper than a barrier).
  float mx = -INFINITY;
  for (int c = lane; c < n; c += 32) mx = fmaxf(mx, ml[2 * c]);
  for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  float sum = 0.0f;
  for (int c = lane; c < n; c += 32) sum += ml[2 * c + 1] * exp2f(ml[2 * c] - mx);
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);

  // Threads split as (chunk slice, 4 dims): parts slices of the chunks for every 4 dims.
  const int cols = hd / 4;
  const int parts = kMergeThreads / cols;
  const int col = tid % cols, part = tid / cols;
  float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
  for (int c = part; c < n; c += parts) {
    const float w = exp2f(ml[2 * c] - mx);
    const float4 x = *reinterpret_cast<const float4*>(acc + static_cast<std::int64_t>(c) * hd + col * 4);
    a.x = fmaf(x.x, w, a.x), a.y = fmaf(x.y, w, a.y), a.z = fmaf(x.z, w, a.z), a.w = fmaf(x.w, w, a.w);
  }
  __shared__ float4 partial[kMergeThreads];
  partial[tid] = a;
  __syncthreads();
  if (part == 0) {
    for (int k = 1; k < parts; ++k) {
      const float4 b = partial[k * cols + col];
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
    }
    const float inv[4] = {a.x / sum, a.y / sum, a.z / sum, a.w / sum};
#pragma unroll
    for (int j = 0; j < 4; ++j) out[col * 4 + j] = __bfloat16_as_ushort(__float2bfloat16_rn(inv[j]));
  }
}

#define DECODE_REQUIRE(ok, what) SPECONTEXT_ATTENTION_REQUIRE("decode_attention", ok, what)


// More than 48 KB of dynamic shared memory must be allowed per kernel and device, once.
template <int kHeadDim, int kMaxGroup, class Keys>
void allow_split_smem() {
  constexpr int kCachedDevices = 64;
  static std::atomic<bool> done[kCachedDevices] = {};
  int dev = 0;
  SPECONTEXT_CUDA_CHECK(cudaGetDevice(&dev));
  const bool cache = dev >= 0 && dev < kCachedDevices;
  if (cache && done[dev].load(std::memory_order_acquire)) return;
  SPECONTEXT_CUDA_CHECK(cudaFuncSetAttribute(decode_split_kernel<kHeadDim, kMaxGroup, Keys>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             SplitConfig<kMaxGroup>::kSmemBytes));
  // K/V bypass L1 (cp.async.cg), so all of the unified L1 may be shared memory.
  SPECONTEXT_CUDA_CHECK(cudaFuncSetAttribute(decode_split_kernel<kHeadDim, kMaxGroup, Keys>,
                                             cudaFuncAttributePreferredSharedMemoryCarveout,
                                             cudaSharedmemCarveoutMaxShared));
  if (cache) done[dev].store(true, std::memory_order_release);
}

template <int kHeadDim, int kMaxGroup, class Keys>
void launch_split(const KernelParams& p, const Keys& keys, int group, int head_batches, int chunk, int nchunks,
                  cudaStream_t stream) {
  allow_split_smem<kHeadDim, kMaxGroup, Keys>();
  const dim3 grid(nchunks, p.kv_heads * head_batches, p.requests);
  SPECONTEXT_CUDA_CHECK(launch_programmatic(decode_split_kernel<kHeadDim, kMaxGroup, Keys>, grid, dim3(kThreads),
                                            SplitConfig<kMaxGroup>::kSmemBytes, stream, p, keys, group, head_batches, chunk, nchunks));
}

template <int kHeadDim, class Keys>
void launch_split(const KernelParams& p, const Keys& keys, int group, int max_group, int head_batches, int chunk,
                  int nchunks, cudaStream_t stream) {
  if (max_group == 4)
    launch_split<kHeadDim, 4>(p, keys, group, head_batches, chunk, nchunks, stream);
  else
    launch_split<kHeadDim, 8>(p, keys, group, head_batches, chunk, nchunks, stream);
}

template <class Keys>
void launch_kernels(const KernelParams& p, const Keys& keys, int group, int max_group, int head_batches, int chunk,
                    int nchunks, cudaStream_t stream) {
  switch (p.head_dim) {
    case 32: launch_split<32>(p, keys, group, max_group, head_batches, chunk, nchunks, stream); break;
    case 64: launch_split<64>(p, keys, group, max_group, head_batches, chunk, nchunks, stream); break;
    default: launch_split<128>(p, keys, group, max_group, head_batches, chunk, nchunks, stream); break;
  }
  if (nchunks > 1) {
    SPECONTEXT_CUDA_CHECK(launch_programmatic(decode_merge_kernel<Keys>, dim3(p.q_heads, p.requests), dim3(kMergeThreads), 0, stream, p,
                                              keys, chunk, nchunks));
  }
}

}  // namespace

std::size_t decode_attention_workspace_bytes(int requests, int q_heads, int head_dim, int max_context) {
  if (requests <= 0 || q_heads <= 0 || head_dim <= 0 || max_context <= 0) return 0;
  return static_cast<std::size_t>(requests) * q_heads * chunk_cap(requests, max_context) * (head_dim + 2) * sizeof(float);
}

void launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  DECODE_REQUIRE(p.requests >= 0, "requests must be >= 0, got " + std::to_string(p.requests));
  if (p.requests == 0) return;
  check_attention_layout("decode_attention", p);
  DECODE_REQUIRE(p.requests <= 65535, "requests must be <= 65535, got " + std::to_string(p.requests));
  DECODE_REQUIRE(p.max_length >= 0, "max_length must be >= 0 (0: max_context)");
  const bool sparse = p.indices != nullptr;
  if (sparse) {
    DECODE_REQUIRE(p.index_counts != nullptr, "index_counts is null (sparse mode: indices is set)");
    DECODE_REQUIRE(p.index_request_stride >= 0 && p.index_head_stride >= 0,
                   "index_request_stride and index_head_stride must be >= 0");
    DECODE_REQUIRE(p.count_request_stride >= 0 && p.count_head_stride >= 0,
                   "count_request_stride and count_head_stride must be >= 0");
  } else {
    DECODE_REQUIRE(p.index_counts == nullptr, "index_counts is set but indices is null");
    DECODE_REQUIRE(p.lengths != nullptr, "a tensor pointer is null (lengths)");
  }
  const std::int64_t hd = p.head_dim;

  const int group = p.q_heads / p.kv_heads;
  const int max_group = group <= 4 ? 4 : 8;
  const int head_batches = (group + max_group - 1) / max_group;

  // Chunks: enough blocks for kWaves waves of resident split blocks, but no more chunks than the
  // workspace bound allows and none shorter than kMinChunk keys (the pipeline has to fill, and
  // every chunk costs a merge row).
  const int max_len = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  const int cap = chunk_cap(p.requests, max_len);
  const std::int64_t rows = static_cast<std::int64_t>(p.requests) * p.kv_heads * head_batches;
  const std::int64_t resident =
      static_cast<std::int64_t>(multiprocessors()) * (max_group == 4 ? SplitConfig<4>::kMinBlocks : SplitConfig<8>::kMinBlocks);
  const std::int64_t wanted = (kWaves * resident + rows - 1) / rows;
  const int want = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(wanted, cap)));
  const int per_chunk = (max_len + want - 1) / want;
  const int chunk = std::max(kMinChunk, (per_chunk + kChunkQuantum - 1) / kChunkQuantum * kChunkQuantum);
  const int nchunks = (max_len + chunk - 1) / chunk;  // <= want <= cap: within the workspace bound
  if (nchunks > 1) {
    const std::size_t need = static_cast<std::size_t>(p.requests) * p.q_heads * nchunks * (hd + 2) * sizeof(float);
    DECODE_REQUIRE(p.workspace != nullptr && aligned16(p.workspace), "workspace is null or not 16-byte aligned");
    DECODE_REQUIRE(p.workspace_bytes >= need, "workspace of " + std::to_string(p.workspace_bytes) + " bytes is too small (" +
                                           std::to_string(need) + " needed; see decode_attention_workspace_bytes)");
  }

  const KernelParams kp = kernel_params(p);
  if (sparse) {
    const SparseKeys keys{p.indices,      p.index_request_stride, p.index_head_stride,
                          p.index_counts, p.count_request_stride, p.count_head_stride};
    launch_kernels(kp, keys, group, max_group, head_batches, chunk, nchunks, stream);
  } else {
    launch_kernels(kp, DenseKeys{}, group, max_group, head_batches, chunk, nchunks, stream);
  }
}

}  // namespace specontext::kernels
