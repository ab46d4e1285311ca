#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention_checks.hpp"
#include "kernels/cp_async.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/decode_attention.cuh"
#include "kernels/device_properties.cuh"
#include "kernels/mma.cuh"
#include "kernels/programmatic_launch.cuh"
#include "kernels/shared_memory_opt_in.cuh"

namespace specontext::kernels {
namespace {

// Why this shape (H200: 4.8 TB/s HBM, 132 SMs):
// - Decode attention reads every valid K/V byte once and does ~2 FLOP per byte per query head,
//   so it is HBM-bound; the only goals are (a) touch each K/V byte once per GQA group, (b) keep
//   enough bytes in flight on every SM, (c) spend few instructions per byte.
// - (b) Every warp streams its keys through a private ring of kStages shared-memory tiles filled
//   by cp.async (16 bytes a lane; zero-filled past the length, so no invalid byte is ever read):
//   kStages - 1 tiles of 16 keys (K and V, 8 KB at head_dim 128) per warp are in flight ahead of
//   the one in use, without holding registers (~128 KB per SM). The ring is private, so
//   __syncwarp orders it (no block barrier in the main loop).
// - (c) The products go to the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate). S =
//   Q K^T takes the GQA group's query heads as rows 0-7 of the A fragment (rows 8-15 are constant
//   zeros; Q stays in registers) and K from the ring by ldmatrix as B; the online softmax runs on
//   the accumulator fragments (fp32, exp2, one quad of lanes per head). The output is formed
//   transposed, O^T += V^T P^T, with V^T from the ring by ldmatrix.trans as A and P^T as B: the
//   accumulator layout of S is exactly P^T's B fragment (packed to bf16 in place), and O^T's
//   accumulators hold only the 8 real heads (half the registers and mma of O = P V, whose M
//   would be padded heads). 24 mma and 16 ldmatrix cover 16 keys; the CUDA-core version before
//   (8 dims a lane, fp32 FMAs, shuffle reductions) spent ~70 instructions a key and streamed
//   ~4.0 TB/s at R = 32, 16K on the H200. Groups above 8 are split over blockIdx.y (K/V then read
//   once per batch).
// - The ring's 16-byte pieces are XOR-swizzled within each 128-byte line by the key, so the eight
//   rows an ldmatrix reads (eight keys, same dims) fall in distinct banks at every head_dim.
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
//   one global load per key. Those copies carry no L2::256B prefetch: rows are scattered, and
//   with 64- or 128-byte rows (head_dim 32, 64) the prefetch would pull unlisted neighbours from
//   HBM; a whole row is in one warp's request anyway.
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkQuantum = 64;            // keys; chunk lengths are multiples of it
constexpr int kMinChunk = 128;               // keys; shorter chunks cost more merging than they save
constexpr int kTargetRequestChunks = 1024;  // requests * chunks at most (bounds the workspace)
constexpr int kWaves = 4;                    // split blocks aimed at, in waves of resident blocks
constexpr int kTileKeys = 16;                // keys of one warp's tile: the k of one P V step
constexpr int kMaxGroup = 8;                 // query heads per block: the N of O^T = V^T P^T
constexpr int kMinBlocks = 2;                // resident split blocks per SM the ring is sized for
constexpr int kWarpRingBytes = 24 * 1024;    // 2 blocks x 4 warps = 192 KB of an SM's 227 KB
constexpr int kMergeThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

// The ring per head_dim: a stage is one tile of K and one of V; as many stages as fit in
// kWarpRingBytes (3 at head_dim 128, 6 at 64, 12 at 32), so each warp keeps the same bytes in
// flight whatever the row size.
template <int kHeadDim>
struct SplitConfig {
  static constexpr int kTileElems = kTileKeys * kHeadDim;  // of K (and of V) per stage
  static constexpr int kStageBytes = 2 * kTileElems * 2;
  static constexpr int kStages = kWarpRingBytes / kStageBytes;
  static constexpr int kSmemBytes = kWarps * kWarpRingBytes;
  static_assert(kStages >= 3, "at least two tiles in flight ahead of the one in use");
  static_assert(kMaxGroup * kHeadDim * 4 <= kWarpRingBytes, "the epilogue reuses a warp's ring");
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
// by-value parameter differently (+4 registers on the CUDA-core split kernels of the time, +10 on
// the merge), so the kernels take this copy; the sparse fields travel in SparseKeys.
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

// Element offset, in a tile of kTileKeys rows of kHeadDim bf16, of the 16-byte piece c of row key:
// the pieces of each 128-byte line are permuted by XOR with the key (with the key pair at
// head_dim 32, where a line holds two rows), so the eight keys of an ldmatrix tile hit distinct
// banks.
template <int kHeadDim>
__device__ __forceinline__ int swizzled(int key, int c) {
  constexpr int kPieces = kHeadDim / 8;  // per row
  constexpr int kRowsPerLine = kPieces < 8 ? 8 / kPieces : 1;
  const int piece = key * kPieces + c;
  return ((piece & ~7) | ((piece ^ (key / kRowsPerLine)) & 7)) * 8;
}

// Grid: x = chunk, y = kv_head * head_batches + batch, z = request; dynamic shared memory
// SplitConfig<kHeadDim>::kSmemBytes. Writes, per query head of the batch, the chunk's max (log2
// units), sum and unnormalised accumulator to the workspace, or the normalised output directly
// when the launch has a single chunk. Keys: DenseKeys or SparseKeys (which cache rows are keys).
// history_ready (dense only; DecodeAttentionParams::history_ready): the first tiles of keys below
// the newest one are issued before the wait for the previous kernel.
template <int kHeadDim, class Keys>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    decode_split_kernel(KernelParams p, Keys keys, int group, int head_batches, int chunk, int nchunks, bool history_ready) {
  constexpr bool kSparse = Keys::kSparse;
  using Cfg = SplitConfig<kHeadDim>;
  constexpr int kStages = Cfg::kStages;
  constexpr int kTileElems = Cfg::kTileElems;
  constexpr int kPieces = kHeadDim / 8;                       // 16-byte pieces of a row
  constexpr int kPiecesPerLane = kTileKeys * kPieces / 32;    // per lane per tensor and tile
  constexpr int kKSteps = kHeadDim / 16;                      // k-steps of Q K^T
  constexpr int kMTiles = kHeadDim / 16;                      // m-tiles of O^T = V^T P^T
  static_assert(kChunkQuantum % kTileKeys == 0, "chunks hold whole tiles");

  extern __shared__ __align__(16) unsigned char smem[];

  // Launched programmatically: q and the newest key come from the kernel before (and, without
  // history_ready, anything else may too); once past the wait, the merge (or, with one chunk, the
  // O projection) may place its blocks.
  auto wait_and_release = [] {
    wait_for_previous_grid();
    allow_next_grid_to_start();
  };
  const bool early = !kSparse && history_ready;
  if (!early) wait_and_release();

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
    if (early) wait_and_release();
    if (direct && c == 0) {
      for (int i = tid; i < nh * kHeadDim; i += kThreads)
        p.out[r * p.out_row_stride + static_cast<std::int64_t>(h0) * kHeadDim + i] = 0;
    }
    return;
  }

  const int warp = tid / 32, lane = tid % 32;
  const int row0 = lane / 4, col0 = 2 * (lane % 4);  // fragment coordinates (see kernels/mma.cuh)

  // Tiles of kTileKeys consecutive keys; warp w takes tiles w, w + kWarps, ... of the chunk.
  const std::int64_t slot = p.slots[r];
  const std::int64_t base = slot * p.kv_request_stride + kvh * p.kv_head_stride;
  const std::uint16_t* kg = p.k_cache + base;
  const std::uint16_t* vg = p.v_cache + base;
  std::uint16_t* ring = reinterpret_cast<std::uint16_t*>(smem + warp * kWarpRingBytes);  // stage s: K, V
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
  // Piece i of a lane is piece e = lane + 32 i of the tile: dims 8 (e % kPieces) .. of tile key
  // e / kPieces (consecutive lanes, consecutive global bytes), stored swizzled. rows (sparse only):
  // tile_row(j) of this lane; the row of tile key k is lane k's.
  auto issue = [&](int j, int rows) {
    const int tkey0 = key0 + (j * kWarps + warp) * kTileKeys;
    std::uint16_t* sk = ring + (j % kStages) * 2 * kTileElems;
    const bool full = tkey0 + kTileKeys <= key1;  // uniform: every tile but a chunk's last
    if constexpr (kSparse) {
      // Rows outside [0, max_context) are clamped into it: no read outside the cache row.
      rows = static_cast<int>(min(static_cast<unsigned>(rows), static_cast<unsigned>(p.max_context - 1)));
#pragma unroll
      for (int i = 0; i < kPiecesPerLane; ++i) {
        const int e = lane + 32 * i, key = e / kPieces, dim = e % kPieces * 8;
        const std::int64_t at = static_cast<std::int64_t>(__shfl_sync(0xffffffffu, rows, key)) * kHeadDim + dim;
        const bool valid = full || tkey0 + key < key1;
        const int to = swizzled<kHeadDim>(key, e % kPieces);
        cp_async16<false>(sk + to, valid ? kg + at : kg, valid);
        cp_async16<false>(sk + kTileElems + to, valid ? vg + at : vg, valid);
      }
    } else {
      const std::uint16_t* kt = kg + static_cast<std::int64_t>(tkey0) * kHeadDim;  // tiles are contiguous
      const std::uint16_t* vt = vg + static_cast<std::int64_t>(tkey0) * kHeadDim;
#pragma unroll
      for (int i = 0; i < kPiecesPerLane; ++i) {
        const int e = lane + 32 * i, key = e / kPieces;
        const bool valid = full || tkey0 + key < key1;
        const int to = swizzled<kHeadDim>(key, e % kPieces);
        cp_async16(sk + to, valid ? kt + e * 8 : kg, valid);
        cp_async16(sk + kTileElems + to, valid ? vt + e * 8 : vg, valid);
      }
    }
  };
  // Fill the ring first (one commit group per tile, empty ones included, so the count of
  // pending groups in the loop is fixed) and only then load q: its latency overlaps the copies.
  // Sparse: the rows of the first kStages tiles are loaded together before any issue.
  // history_ready: the ring's tiles wholly below the newest key (len - 1) are issued before the
  // wait, so their HBM latency overlaps the previous kernel's tail; a warp's tiles rise with s,
  // so those are a prefix of its ring, and each still gets its own commit group.
  int rows[kStages] = {};
  if constexpr (kSparse) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) rows[s] = tile_row(s);
  }
  int first = 0;  // the first ring tile issued after the wait
  if (early) {
    while (first < kStages - 1 && first < my_tiles && key0 + (first * kWarps + warp + 1) * kTileKeys < len) {
      issue(first, rows[first]);
      cp_async_commit();
      ++first;
    }
    wait_and_release();
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < first) continue;
    if (s < my_tiles) issue(s, rows[s]);
    cp_async_commit();
  }
  int next_rows = rows[kStages - 1];  // sparse: tile_row of the next tile to issue

  // Q of the batch's heads as A fragments: row g is head h0 + g (zero past nh), k-step ks holds
  // dims 16 ks .. 16 ks + 15; rows 8-15 are the constant zeros passed to the mma. The softmax
  // scale (times log2 e) is applied to S in fp32.
  unsigned qa[kKSteps][2];
  {
    const std::uint16_t* qrow = p.q + r * p.q_row_stride + static_cast<std::int64_t>(h0 + row0) * kHeadDim + col0;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      qa[ks][0] = row0 < nh ? *reinterpret_cast<const unsigned*>(qrow + 16 * ks) : 0u;
      qa[ks][1] = row0 < nh ? *reinterpret_cast<const unsigned*>(qrow + 16 * ks + 8) : 0u;
    }
  }
  const float qscale = p.scale * kLog2e;

  // Head row0's running max (log2 units) and this lane's part of its sum; O^T's accumulators:
  // m-tile t holds dims 16 t + row0 (o[t][0..1]) and 16 t + 8 + row0 (o[t][2..3]) of heads
  // col0, col0 + 1.
  float m = -INFINITY, l = 0.0f;
  float o[kMTiles][4];
#pragma unroll
  for (int t = 0; t < kMTiles; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;

  // ldmatrix row addresses: lanes 8i .. 8i + 7 give tile i's rows, here keys (k_key) and pieces
  // 2 x + k_piece of the ring. K (B of Q K^T, x = k-step): tiles (keys 0-7, dims 16 x ..),
  // (0-7, + 8), (8-15, 16 x ..), (8-15, + 8); the same tiles of V, transposed, are the A
  // fragment of V^T's m-tile x.
  const int k_key = lane % 8 + lane / 16 * 8, k_piece = lane / 8 % 2;

  // my_tiles is uniform across the warp (ldmatrix and mma need every lane).
  for (int j = 0; j < my_tiles; ++j) {
    __syncwarp();  // every lane is done with the stage tile j + kStages - 1 overwrites (j - 1's)
    if (j + kStages - 1 < my_tiles) issue(j + kStages - 1, next_rows);
    if constexpr (kSparse) next_rows = tile_row(j + kStages);  // used one iteration later
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // this lane's copies of tile j have landed
    __syncwarp();                  // and everybody's are visible

    const std::uint16_t* sk = ring + (j % kStages) * 2 * kTileElems;
    const std::uint16_t* sv = sk + kTileElems;
    // S = Q K^T over the tile's 16 keys: n-tile t holds keys 8 t .. 8 t + 7.
    float s[2][4] = {};
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      unsigned b[4];
      ldmatrix_x4(b, sk + swizzled<kHeadDim>(k_key, 2 * ks + k_piece));
      const unsigned a[4] = {qa[ks][0], 0u, qa[ks][1], 0u};
      mma_bf16(s[0], a, b[0], b[1]);
      mma_bf16(s[1], a, b[2], b[3]);
    }
    // s[t][0..1]: head row0, keys 8 t + col0, + 1 of the tile (s[t][2..3], the zero rows, unused).
    const int tkey0 = key0 + (j * kWarps + warp) * kTileKeys;
    const bool full = tkey0 + kTileKeys <= key1;  // uniform
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[t][e] *= qscale;
        if (!full && tkey0 + 8 * t + col0 + e >= key1) s[t][e] = -INFINITY;
      }
    // Online softmax per head: the head's four lanes agree on its max through two shuffles.
    float mt = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
    mt = fmaxf(mt, m);
    // mt is -inf only while the head has seen no valid key; then nothing changes.
    const float mref = mt == -INFINITY ? 0.0f : mt;
    const float alpha = fast_exp2(m - mref);
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      s[t][0] = fast_exp2(s[t][0] - mref);  // now the weights
      s[t][1] = fast_exp2(s[t][1] - mref);
    }
    l = l * alpha + (s[0][0] + s[0][1] + s[1][0] + s[1][1]);
    m = mt;
    // Once the maxima settle, alpha is 1 for every head: skip the rescale (a warp-uniform test).
    // O^T's columns are heads col0, col0 + 1, whose alphas live in lanes 4 col0 and 4 col0 + 4.
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {
      const float a0 = __shfl_sync(0xffffffffu, alpha, 4 * col0), a1 = __shfl_sync(0xffffffffu, alpha, 4 * col0 + 4);
#pragma unroll
      for (int t = 0; t < kMTiles; ++t) {
        o[t][0] *= a0, o[t][1] *= a1;
        o[t][2] *= a0, o[t][3] *= a1;
      }
    }
    // O^T += V^T P^T: P^T's B fragment (keys col0, + 1 and 8 + col0, + 1 of head row0) is S's
    // accumulators packed to bf16.
    const unsigned pb0 = pack_bf16(s[0][0], s[0][1]), pb1 = pack_bf16(s[1][0], s[1][1]);
#pragma unroll
    for (int t = 0; t < kMTiles; ++t) {
      unsigned a[4];
      ldmatrix_x4_trans(a, sv + swizzled<kHeadDim>(k_key, 2 * t + k_piece));
      mma_bf16(o[t], a, pb0, pb1);
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending; the epilogue reuses the ring

  // A head's sum is spread over its four lanes.
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);

  // Each warp's accumulators go to the start of its own ring ([kMaxGroup][kHeadDim] floats).
  __shared__ float sm_m[kWarps][kMaxGroup];
  __shared__ float sm_l[kWarps][kMaxGroup];
  __syncwarp();
  float* sm_o = reinterpret_cast<float*>(ring);
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int g = col0 + e;  // O^T's column: a head
    if (g >= nh) continue;
#pragma unroll
    for (int t = 0; t < kMTiles; ++t) {
      sm_o[g * kHeadDim + 16 * t + row0] = o[t][e];
      sm_o[g * kHeadDim + 16 * t + 8 + row0] = o[t][2 + e];
    }
  }
  if (lane % 4 == 0 && row0 < nh) {
    sm_m[warp][row0] = m;
    sm_l[warp][row0] = l;
  }
  __syncthreads();

  const std::int64_t out_row0 = static_cast<std::int64_t>(r) * p.q_heads + h0;
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
      acc += reinterpret_cast<const float*>(smem + w * kWarpRingBytes)[g * kHeadDim + d] * e;
    }
    if (direct) {
      const __nv_bfloat16 v = __float2bfloat16_rn(acc / sum);
      p.out[r * p.out_row_stride + static_cast<std::int64_t>(h0 + g) * kHeadDim + d] = __bfloat16_as_ushort(v);
    } else {
      const std::int64_t row = (out_row0 + g) * nchunks + c;
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
  // Launched programmatically: waits for the split kernel's partial results. It does not release
  // the O projection early: on an H100 the decode step was 2-7% faster at R = 1 (8K), 4 and 8
  // when the projection starts only once the merge has finished (bench/README, "Fused epilogues").
  wait_for_previous_grid();
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


template <int kHeadDim, class Keys>
void launch_split(const KernelParams& p, const Keys& keys, int group, int head_batches, int chunk, int nchunks,
                  bool history_ready, cudaStream_t stream) {
  // K/V bypass L1 (cp.async.cg), so all of the unified L1 may be shared memory.
  static SharedMemoryOptIn opt_in;
  opt_in.allow(reinterpret_cast<const void*>(decode_split_kernel<kHeadDim, Keys>), SplitConfig<kHeadDim>::kSmemBytes, true);
  const dim3 grid(nchunks, p.kv_heads * head_batches, p.requests);
  SPECONTEXT_CUDA_CHECK(launch_programmatic(decode_split_kernel<kHeadDim, Keys>, grid, dim3(kThreads),
                                            SplitConfig<kHeadDim>::kSmemBytes, stream, p, keys, group, head_batches, chunk,
                                            nchunks, history_ready));
}

template <class Keys>
void launch_kernels(const KernelParams& p, const Keys& keys, int group, int head_batches, int chunk, int nchunks,
                    bool history_ready, cudaStream_t stream) {
  switch (p.head_dim) {
    case 32: launch_split<32>(p, keys, group, head_batches, chunk, nchunks, history_ready, stream); break;
    case 64: launch_split<64>(p, keys, group, head_batches, chunk, nchunks, history_ready, stream); break;
    default: launch_split<128>(p, keys, group, head_batches, chunk, nchunks, history_ready, stream); break;
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
    DECODE_REQUIRE(!p.history_ready, "history_ready is dense mode only (sparse mode's lists come from the kernels before)");
  } else {
    DECODE_REQUIRE(p.index_counts == nullptr, "index_counts is set but indices is null");
    DECODE_REQUIRE(p.lengths != nullptr, "a tensor pointer is null (lengths)");
  }
  const std::int64_t hd = p.head_dim;

  const int group = p.q_heads / p.kv_heads;
  const int head_batches = (group + kMaxGroup - 1) / kMaxGroup;

  // Chunks: enough blocks for kWaves waves of resident split blocks, but no more chunks than the
  // workspace bound allows and none shorter than kMinChunk keys (the pipeline has to fill, and
  // every chunk costs a merge row).
  const int max_len = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  const int cap = chunk_cap(p.requests, max_len);
  const std::int64_t rows = static_cast<std::int64_t>(p.requests) * p.kv_heads * head_batches;
  const std::int64_t resident = static_cast<std::int64_t>(multiprocessors()) * kMinBlocks;
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
    launch_kernels(kp, keys, group, head_batches, chunk, nchunks, false, stream);
  } else {
    launch_kernels(kp, DenseKeys{}, group, head_batches, chunk, nchunks, p.history_ready, stream);
  }
}

}  // namespace specontext::kernels
