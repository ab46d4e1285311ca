#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention_checks.hpp"
#include "kernels/attention_scores.cuh"
#include "kernels/cp_async.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/device_properties.cuh"
#include "kernels/shared_memory_opt_in.cuh"

namespace specontext::kernels {
namespace {

using Reduce = AttentionScoresParams::Reduce;

// Why this shape (H200: 4.8 TB/s HBM, 132 SMs; Llama-3.1-8B-shaped draft: 32 query heads on 8
// KV heads of 128 dims, contexts up to 256K, up to 32 requests):
// - Reading K dominates: 256 bytes per key and KV head, against 16 bytes of logits written and
//   read back per key for a group of 4 query heads and 4 bytes of output. The per-head softmax
//   needs every key before any probability is known, so the logits make one round trip through
//   the workspace (recomputing them would read K twice).
// - The split kernel is decode_attention's without V: each warp streams its keys through a
//   private ring of kStages shared-memory tiles filled by cp.async (zero-filled past the key
//   count, so no invalid byte is read; NaN there must not leak in), a lane group of head_dim / 8
//   lanes owns one key at a time (16 bytes a lane) and takes kKeysPerGroup keys per tile, and all
//   query heads of the group live in registers (scale folded in), so one K read feeds `group`
//   dot products.
// - Without V there are few FLOPs per byte to hide the bookkeeping behind, so the partial dot
//   products (group x kKeysPerGroup per lane) are combined by a reduce-scatter over the lane
//   group instead of a butterfly: about V shuffles instead of V log2(lanes), and afterwards each
//   lane owns distinct (head, key) logits, so it alone stores them and folds them into its
//   running (max, sum of exp): kPerLane + 1 expf per lane per tile (2 for the 8B draft's group of
//   4 at head_dim 128) instead of one per value and lane.
// - Split-K: enough chunks for kWaves waves of resident split blocks, none shorter than
//   kMinChunk keys. A chunk costs only 8 bytes of partials per head (read back by every reduce
//   block of its request), so more waves than decode_attention's are cheap and shorten the tail.
// - The reduce kernel is a plain stream over the logits (float4 per thread and head); every block
//   first merges the (few, L2-resident) chunk partials of its heads into a log-sum-exp. For max,
//   max_h exp(x_h - lse_h) = exp(max_h (x_h - lse_h)): one expf per key, not one per head.
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkQuantum = 128;  // keys; chunk lengths are multiples of it (and of every tile)
constexpr int kMinChunk = 128;      // keys; bounds the chunk count (and the workspace) by max_context / 128
constexpr int kWaves = 8;           // split blocks aimed at, in waves of resident blocks
constexpr int kKeysPerGroup = 4;    // keys a lane group takes from each tile
constexpr int kTileBytes = 2048;    // K bytes of one warp's tile
constexpr int kStages = 8;          // tiles per warp ring: 7 in flight ahead of the one in use
constexpr int kMinBlocks = 3;       // resident split blocks per SM (64 KB of shared memory each)
constexpr int kWarpBytes = kStages * kTileBytes;
constexpr int kSmemBytes = kWarps * kWarpBytes;
constexpr int kReduceThreads = 256;
constexpr int kReduceKeys = kReduceThreads * 4;  // keys per pass of a reduce block (float4 a thread)
constexpr int kReduceBlocksPerSm = 2048 / kReduceThreads;
constexpr int kReduceWaves = 4;
constexpr int kMaxQHeads = 256;  // the reduce kernel keeps one log-sum-exp per head in shared memory

// Workspace: logits [requests][q_heads][ld] with ld = max_context rounded up to 4 (rows stay
// 16-byte aligned for the float4 reads), then float2 (max, sum) [requests][q_heads][nchunks].
std::int64_t logits_ld(int max_context) { return (static_cast<std::int64_t>(max_context) + 3) / 4 * 4; }
std::int64_t max_chunks(int max_context) { return (static_cast<std::int64_t>(max_context) + kMinChunk - 1) / kMinChunk; }

__host__ __device__ constexpr int ilog2(int x) { return x <= 1 ? 0 : 1 + ilog2(x / 2); }

// Keys of request r: lengths[r] + length_offset clamped to [0, limit] (in 64 bits: the sum may
// overflow an int).
__device__ __forceinline__ int key_count(const AttentionScoresParams& p, int r, int limit) {
  const long long n = static_cast<long long>(p.lengths[r]) + p.length_offset;
  return n < 0 ? 0 : (n > limit ? limit : static_cast<int>(n));
}

// One reduce-scatter step per offset kOff = kFirst, kFirst / 2, .., 1 of values s[0 .. 2 * kHalf):
// a lane keeps the upper half when its kOff bit is set (else the lower) and adds its partner's
// copy of that half, so the live values halve each step. Recursive templates keep every index a
// constant: with loop-computed halves nvcc put s in local memory.
template <int kOff, int kHalf, int N>
__device__ __forceinline__ void reduce_scatter(float (&s)[N], int lane) {
  if constexpr (kOff >= 1) {
    const bool upper = (lane & kOff) != 0;
#pragma unroll
    for (int i = 0; i < kHalf; ++i) {
      const float send = upper ? s[i] : s[i + kHalf];
      const float keep = upper ? s[i + kHalf] : s[i];
      s[i] = keep + __shfl_xor_sync(0xffffffffu, send, kOff);
    }
    reduce_scatter<kOff / 2, kHalf / 2>(s, lane);
  }
}

// Softmax states (max, sum of exp(x - max)) merged; -inf max means empty (and sum 0).
__device__ __forceinline__ void merge_state(float& m, float& l, float mo, float lo) {
  const float mn = fmaxf(m, mo);
  if (mn == -INFINITY) return;
  l = l * expf(m - mn) + lo * expf(mo - mn);
  m = mn;
}

// Split kernel. Grid: x = chunk, y = kv_head * head_batches + batch, z = request; dynamic shared
// memory kSmemBytes. Writes the logit scale * q_h . k_j of every key of the chunk for the batch's
// query heads, and per head the chunk's (max, sum of exp(logit - max)).
template <int kHeadDim, int kMaxGroup>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    scores_split_kernel(AttentionScoresParams p, int limit, int group, int head_batches, int chunk, int nchunks,
                        std::int64_t ld) {
  constexpr int kDims = 8;                                   // dims of a key per lane
  constexpr int kLanes = kHeadDim / kDims;                   // lanes per key (a lane group)
  constexpr int kGroupsPerWarp = 32 / kLanes;                // keys a warp reads per instruction
  constexpr int kTileKeys = kGroupsPerWarp * kKeysPerGroup;  // 8, 16 or 32 keys
  constexpr int kTileElems = kTileBytes / 2;
  constexpr int kPiecesPerLane = kTileBytes / 16 / 32;  // 16-byte copies per lane per tile
  // Reduce-scatter: kValues partial sums per lane (index g * kKeysPerGroup + t) end as kPerLane
  // complete logits per lane; where there are fewer values than lanes, the top lanes of a group
  // duplicate the bottom ones and only "owner" lanes (li * kPerLane < kValues) act on them.
  constexpr int kValues = kMaxGroup * kKeysPerGroup;
  constexpr int kPerLane = kValues >= kLanes ? kValues / kLanes : 1;
  constexpr int kSplit0 = (kValues < kLanes ? kValues : kLanes) / 2;  // first reduce-scatter offset
  // Lanes of a group differing only below this bit own the same query head.
  constexpr int kSameHead = kLanes / kMaxGroup < kKeysPerGroup ? kLanes / kMaxGroup : kKeysPerGroup;
  static_assert(kMaxGroup <= kLanes, "a lane's logits must belong to one query head");
  static_assert(kTileKeys * kHeadDim * 2 == kTileBytes, "a tile holds kTileBytes of K");
  constexpr int kPlainSteps = kValues < kLanes ? ilog2(kLanes / kValues) : 0;
  static_assert(kChunkQuantum % kTileKeys == 0, "chunks hold whole tiles");

  extern __shared__ __align__(16) unsigned char smem[];

  const int r = blockIdx.z;
  const int kvh = blockIdx.y / head_batches;
  const int h0 = kvh * group + (blockIdx.y % head_batches) * kMaxGroup;
  const int nh = min(kMaxGroup, kvh * group + group - h0);
  const int c = blockIdx.x;
  const int keys = key_count(p, r, limit);
  const int key0 = c * chunk;
  const int key1 = min(key0 + chunk, keys);
  if (key0 >= key1) return;  // the reduce kernel only reads chunks below ceil(keys / chunk)

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int li = lane % kLanes, gw = lane / kLanes;
  const int d0 = li * kDims;

  // Tiles of kTileKeys consecutive keys; warp w takes tiles w, w + kWarps, ... of the chunk.
  const std::int64_t slot = p.slots[r];
  const std::uint16_t* kg = p.k_cache + slot * p.kv_request_stride + kvh * p.kv_head_stride;
  std::uint16_t* ring = reinterpret_cast<std::uint16_t*>(smem + warp * kWarpBytes);
  const int ntiles = (key1 - key0 + kTileKeys - 1) / kTileKeys;
  const int my_tiles = warp < ntiles ? (ntiles - warp + kWarps - 1) / kWarps : 0;
  auto issue = [&](int j) {
    const int tkey0 = key0 + (j * kWarps + warp) * kTileKeys;
    const std::uint16_t* kt = kg + static_cast<std::int64_t>(tkey0) * kHeadDim;  // tiles are contiguous
    std::uint16_t* sk = ring + (j % kStages) * kTileElems;
    if (tkey0 + kTileKeys <= key1) {  // every tile but a chunk's last: no masking (uniform branch)
#pragma unroll
      for (int i = 0; i < kPiecesPerLane; ++i) {
        const int e = lane + 32 * i;  // 16-byte piece of the tile
        cp_async16(sk + e * 8, kt + e * 8, true);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPiecesPerLane; ++i) {
        const int e = lane + 32 * i;
        const bool valid = tkey0 + e / kLanes < key1;
        cp_async16(sk + e * 8, valid ? kt + e * 8 : kg, valid);
      }
    }
  };
  // Fill the ring first (one commit group per tile, empty ones included, so the count of
  // pending groups in the loop is fixed) and only then load q: its latency overlaps the copies.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < my_tiles) issue(s);
    cp_async_commit();
  }

  float q[kMaxGroup][kDims];
  const std::uint16_t* qrow = p.q + r * p.q_row_stride + static_cast<std::int64_t>(h0) * kHeadDim + d0;
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < nh) {
      unpack8(*reinterpret_cast<const uint4*>(qrow + g * kHeadDim), q[g]);
#pragma unroll
      for (int j = 0; j < kDims; ++j) q[g][j] *= p.scale;
    } else {
#pragma unroll
      for (int j = 0; j < kDims; ++j) q[g][j] = 0.0f;
    }
  }

  // What this lane owns after the reduce-scatter: logits first .. first + kPerLane - 1, all of
  // query head my_g (kPerLane divides kKeysPerGroup), keys my_t0 + p of its lane group.
  const int first = li * kPerLane;
  const bool owner = first < kValues;
  const int my_g = first / kKeysPerGroup;
  const int my_t0 = first % kKeysPerGroup;
  const bool writes = owner && my_g < nh;
  float* logits = p.workspace + (static_cast<std::int64_t>(r) * p.q_heads + h0 + (writes ? my_g : 0)) * ld;
  float m = -INFINITY, l = 0.0f;

  // my_tiles is uniform across the warp (the shuffles below need every lane).
  for (int j = 0; j < my_tiles; ++j) {
    __syncwarp();  // every lane is done with the stage tile j + kStages - 1 overwrites (j - 1's)
    if (j + kStages - 1 < my_tiles) issue(j + kStages - 1);
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // this lane's copies of tile j have landed
    __syncwarp();                  // and everybody's are visible

    const std::uint16_t* sk = ring + (j % kStages) * kTileElems + gw * kHeadDim + d0;
    const int kfirst = key0 + (j * kWarps + warp) * kTileKeys + gw;  // key t: kfirst + t * kGroupsPerWarp
    uint4 kr[kKeysPerGroup];
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) kr[t] = *reinterpret_cast<const uint4*>(sk + t * kGroupsPerWarp * kHeadDim);
    // Keys outer, heads inner: each K row is widened to fp32 once per tile, not per head.
    float s[kValues];
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) {
      float kf[kDims];
      unpack8(kr[t], kf);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        float acc = q[g][0] * kf[0];
#pragma unroll
        for (int d = 1; d < kDims; ++d) acc = fmaf(q[g][d], kf[d], acc);
        s[g * kKeysPerGroup + t] = acc;
      }
    }
    // Plain sums over the high lane bits while there are fewer values than lanes...
#pragma unroll
    for (int step = 0; step < kPlainSteps; ++step)
#pragma unroll
      for (int i = 0; i < kValues; ++i) s[i] += __shfl_xor_sync(0xffffffffu, s[i], (kLanes / 2) >> step);
    // ...then reduce-scatter: lane li ends with values li * kPerLane .. li * kPerLane + kPerLane - 1
    // (li % kValues when there are fewer values than lanes).
    reduce_scatter<kSplit0, kSplit0 * kPerLane>(s, lane);

    float mt = m;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int key = kfirst + (my_t0 + i) * kGroupsPerWarp;
      if (key < key1) {
        if (writes) logits[key] = s[i];
      } else {
        s[i] = -INFINITY;
      }
      mt = fmaxf(mt, s[i]);
    }
    if (mt != -INFINITY) {  // -inf only while this lane has seen no valid key: nothing changes
      float psum = 0.0f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) psum += expf(s[i] - mt);
      l = l * expf(m - mt) + psum;
      m = mt;
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending

  // Merge the lanes of the warp that own the same head (within a lane group: the bits below
  // kSameHead; across lane groups: the bits from kLanes up). Non-owner lanes hold duplicates and
  // only ever meet each other.
#pragma unroll
  for (int step = 0; step < 5; ++step) {
    const int off = 1 << step;
    if (off >= kSameHead && off < kLanes) continue;
    const float mo = __shfl_xor_sync(0xffffffffu, m, off);
    const float lo = __shfl_xor_sync(0xffffffffu, l, off);
    merge_state(m, l, mo, lo);
  }
  __shared__ float sm_m[kWarps][kMaxGroup];
  __shared__ float sm_l[kWarps][kMaxGroup];
  if (gw == 0 && owner && li % kSameHead == 0) {  // exactly one lane per head and warp
    sm_m[warp][my_g] = m;
    sm_l[warp][my_g] = l;
  }
  __syncthreads();
  if (tid < nh) {
    float mm = sm_m[0][tid], ll = sm_l[0][tid];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) merge_state(mm, ll, sm_m[w][tid], sm_l[w][tid]);
    // Not -inf: the chunk holds a valid key and each is some warp's.
    float2* part = reinterpret_cast<float2*>(p.workspace + static_cast<std::int64_t>(p.requests) * p.q_heads * ld);
    part[(static_cast<std::int64_t>(r) * p.q_heads + h0 + tid) * nchunks + c] = make_float2(mm, ll);
  }
}

// Reduce kernel. Grid: x = span of keys, y = output row, z = request; kReduceThreads threads.
// Writes the pinned columns (block x = 0) and the reduced probabilities of keys
// x * span .. x * span + span - 1 (those below the key count).
__global__ void __launch_bounds__(kReduceThreads)
    scores_reduce_kernel(AttentionScoresParams p, int limit, int chunk, int nchunks, int span, std::int64_t ld) {
  const int r = blockIdx.z, row = blockIdx.y;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int out_rows = p.all_heads ? 1 : p.kv_heads;
  float* out = p.out + (static_cast<std::int64_t>(r) * out_rows + row) * p.out_stride + p.column_offset;
  if (blockIdx.x == 0)
    for (int i = tid; i < p.column_offset; i += kReduceThreads) out[i - p.column_offset] = INFINITY;
  const int keys = key_count(p, r, limit);
  const int key0 = blockIdx.x * span;
  if (key0 >= keys) return;

  const int group = p.q_heads / p.kv_heads;
  const int hfirst = p.all_heads ? 0 : row * group;
  const int nh = p.all_heads ? p.q_heads : group;

  // Log-sum-exp of each head over its chunks (a warp a head; chunks past the count are unwritten).
  __shared__ float lse[kMaxQHeads];
  const int n = min((keys - 1) / chunk + 1, nchunks);  // keys >= 1 here
  const float2* part = reinterpret_cast<const float2*>(p.workspace + static_cast<std::int64_t>(p.requests) * p.q_heads * ld) +
                       (static_cast<std::int64_t>(r) * p.q_heads + hfirst) * nchunks;
  // Max first, then the rescaled sum (the second pass hits L1): the loads of each pass are
  // independent, so several are in flight per lane; an online merge would chain them (long
  // contexts over few requests have hundreds of chunks).
  for (int h = warp; h < nh; h += kReduceThreads / 32) {
    const float2* ph = part + static_cast<std::int64_t>(h) * nchunks;
    float m = -INFINITY;
#pragma unroll 4
    for (int i = lane; i < n; i += 32) m = fmaxf(m, ph[i].x);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float l = 0.0f;  // m is finite: n >= 1 chunk, each with a valid key
#pragma unroll 4
    for (int i = lane; i < n; i += 32) {
      const float2 v = ph[i];
      l += v.y * expf(v.x - m);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) l += __shfl_xor_sync(0xffffffffu, l, off);
    if (lane == 0) lse[h] = m + logf(l);
  }
  __syncthreads();

  const float* logits = p.workspace + (static_cast<std::int64_t>(r) * p.q_heads + hfirst) * ld;
  const int key_end = min(key0 + span, keys);
  const bool mean = p.reduce == Reduce::Mean;
  const float inv_nh = 1.0f / static_cast<float>(nh);
  // Keys past the count inside the last float4 are computed from stale workspace and dropped.
  for (int key = key0 + 4 * tid; key < key_end; key += kReduceKeys) {
    float a[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) a[e] = mean ? 0.0f : -INFINITY;
#pragma unroll 8
    for (int h = 0; h < nh; ++h) {
      const float4 x = *reinterpret_cast<const float4*>(logits + h * ld + key);
      const float b = lse[h];
      const float xs[4] = {x.x - b, x.y - b, x.z - b, x.w - b};
#pragma unroll
      for (int e = 0; e < 4; ++e) a[e] = mean ? a[e] + expf(xs[e]) : fmaxf(a[e], xs[e]);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = key + e;
      if (j >= keys) break;
      out[j] = p.pin_last && j == keys - 1 ? INFINITY : (mean ? a[e] * inv_nh : expf(a[e]));
    }
  }
}

#define SCORES_REQUIRE(ok, what) SPECONTEXT_ATTENTION_REQUIRE("attention_scores", ok, what)


struct SplitLaunch {
  int limit, group, head_batches, chunk, nchunks;
  std::int64_t ld;
};

template <int kHeadDim, int kMaxGroup>
void launch_split(const AttentionScoresParams& p, const SplitLaunch& s, cudaStream_t stream) {
  // K bypasses L1 (cp.async.cg), so all of the unified L1 may be shared memory.
  static SharedMemoryOptIn opt_in;
  opt_in.allow(reinterpret_cast<const void*>(scores_split_kernel<kHeadDim, kMaxGroup>), kSmemBytes, true);
  const dim3 grid(s.nchunks, p.kv_heads * s.head_batches, p.requests);
  scores_split_kernel<kHeadDim, kMaxGroup>
      <<<grid, kThreads, kSmemBytes, stream>>>(p, s.limit, s.group, s.head_batches, s.chunk, s.nchunks, s.ld);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

// A group fits the register-resident batch of kMaxGroup heads (1, 2, 4 or 8, at most a lane
// group's width); larger groups are split over blockIdx.y (K then read once per batch).
template <int kHeadDim>
void launch_split(const AttentionScoresParams& p, int max_group, const SplitLaunch& s, cudaStream_t stream) {
  switch (max_group) {
    case 1: launch_split<kHeadDim, 1>(p, s, stream); break;
    case 2: launch_split<kHeadDim, 2>(p, s, stream); break;
    case 4: launch_split<kHeadDim, 4>(p, s, stream); break;
    default:
      if constexpr (kHeadDim / 8 >= 8)
        launch_split<kHeadDim, 8>(p, s, stream);
      else
        throw std::logic_error("attention_scores: a head batch of 8 needs head_dim >= 64");
      break;
  }
}

}  // namespace

std::size_t attention_scores_workspace_bytes(int requests, int q_heads, int max_context) {
  if (requests <= 0 || q_heads <= 0 || max_context <= 0) return 0;
  const std::int64_t rows = static_cast<std::int64_t>(requests) * q_heads;
  return static_cast<std::size_t>(rows * (logits_ld(max_context) + 2 * max_chunks(max_context))) * sizeof(float);
}

void launch_attention_scores(const AttentionScoresParams& p, cudaStream_t stream) {
  SCORES_REQUIRE(p.requests >= 0, "requests must be >= 0, got " + std::to_string(p.requests));
  if (p.requests == 0) return;
  SCORES_REQUIRE(p.requests <= 65535, "requests must be <= 65535, got " + std::to_string(p.requests));
  SCORES_REQUIRE(p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128,
                 "head_dim " + std::to_string(p.head_dim) + " is not supported (32, 64 or 128)");
  SCORES_REQUIRE(p.q_heads > 0 && p.kv_heads > 0 && p.q_heads % p.kv_heads == 0,
                 "q_heads (" + std::to_string(p.q_heads) + ") must be a positive multiple of kv_heads (" +
                     std::to_string(p.kv_heads) + ")");
  SCORES_REQUIRE(p.q_heads <= kMaxQHeads, "q_heads must be <= " + std::to_string(kMaxQHeads) + ", got " + std::to_string(p.q_heads));
  SCORES_REQUIRE(p.max_context > 0, "max_context must be > 0");
  SCORES_REQUIRE(p.max_length >= 0, "max_length must be >= 0 (0: max_context)");
  SCORES_REQUIRE(p.scale > 0.0f && std::isfinite(p.scale), "scale must be positive and finite");
  SCORES_REQUIRE(p.reduce == Reduce::Max || p.reduce == Reduce::Mean, "reduce must be Max or Mean");
  SCORES_REQUIRE(p.q && p.k_cache && p.slots && p.lengths && p.out, "a tensor pointer is null");
  SCORES_REQUIRE(aligned16(p.q) && aligned16(p.k_cache), "q and k_cache must be 16-byte aligned");
  const std::int64_t hd = p.head_dim;
  SCORES_REQUIRE(p.q_row_stride % 8 == 0 && p.q_row_stride >= p.q_heads * hd,
                 "q_row_stride must be a multiple of 8 and >= q_heads * head_dim");
  SCORES_REQUIRE(p.kv_head_stride % 8 == 0 && p.kv_head_stride >= p.max_context * hd,
                 "kv_head_stride must be a multiple of 8 and >= max_context * head_dim");
  SCORES_REQUIRE(p.kv_request_stride % 8 == 0 && p.kv_request_stride >= p.kv_heads * p.kv_head_stride,
                 "kv_request_stride must be a multiple of 8 and >= kv_heads * kv_head_stride");
  SCORES_REQUIRE(p.column_offset >= 0, "column_offset must be >= 0, got " + std::to_string(p.column_offset));
  SCORES_REQUIRE(p.out_stride >= static_cast<std::int64_t>(p.max_context) + p.column_offset,
                 "out_stride must be >= max_context + column_offset");
  SCORES_REQUIRE(reinterpret_cast<std::uintptr_t>(p.out) % alignof(float) == 0, "out must be 4-byte aligned");

  SplitLaunch s{};
  s.limit = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  s.group = p.q_heads / p.kv_heads;
  s.ld = logits_ld(p.max_context);
  // The register-resident batch of query heads: the group rounded up to a power of two, at most
  // 8 and at most a lane group's width (head_dim / 8 lanes) so that a lane's logits share a head.
  const int lane_cap = std::min(8, p.head_dim / 8);
  int max_group = 1;
  while (max_group < s.group && max_group < lane_cap) max_group *= 2;
  s.head_batches = (s.group + max_group - 1) / max_group;

  // Chunks: enough blocks for kWaves waves of resident split blocks, none shorter than
  // kMinChunk keys (so at most max_chunks(max_context): within the workspace bound).
  const std::int64_t rows = static_cast<std::int64_t>(p.requests) * p.kv_heads * s.head_batches;
  const std::int64_t resident = static_cast<std::int64_t>(multiprocessors()) * kMinBlocks;
  const std::int64_t wanted = std::max<std::int64_t>(1, (kWaves * resident + rows - 1) / rows);
  const std::int64_t per_chunk = (s.limit + wanted - 1) / wanted;
  s.chunk = static_cast<int>(std::max<std::int64_t>(kMinChunk, (per_chunk + kChunkQuantum - 1) / kChunkQuantum * kChunkQuantum));
  s.nchunks = static_cast<int>((static_cast<std::int64_t>(s.limit) + s.chunk - 1) / s.chunk);

  const std::size_t need = static_cast<std::size_t>(static_cast<std::int64_t>(p.requests) * p.q_heads * (s.ld + 2 * s.nchunks)) * sizeof(float);
  SCORES_REQUIRE(p.workspace != nullptr && aligned16(p.workspace), "workspace is null or not 16-byte aligned");
  SCORES_REQUIRE(p.workspace_bytes >= need, "workspace of " + std::to_string(p.workspace_bytes) + " bytes is too small (" +
                                                std::to_string(need) + " needed; see attention_scores_workspace_bytes)");

  // Reduce spans: multiples of kReduceKeys, enough blocks for kReduceWaves waves.
  const int out_rows = p.all_heads ? 1 : p.kv_heads;
  const std::int64_t reduce_rows = static_cast<std::int64_t>(p.requests) * out_rows;
  const std::int64_t reduce_wanted = std::max<std::int64_t>(
      1, (static_cast<std::int64_t>(kReduceWaves) * multiprocessors() * kReduceBlocksPerSm + reduce_rows - 1) / reduce_rows);
  const std::int64_t per_span = (s.limit + reduce_wanted - 1) / reduce_wanted;
  const int span = static_cast<int>(std::max<std::int64_t>(kReduceKeys, (per_span + kReduceKeys - 1) / kReduceKeys * kReduceKeys));
  const int nspans = static_cast<int>((static_cast<std::int64_t>(s.limit) + span - 1) / span);

  switch (p.head_dim) {
    case 32: launch_split<32>(p, max_group, s, stream); break;
    case 64: launch_split<64>(p, max_group, s, stream); break;
    default: launch_split<128>(p, max_group, s, stream); break;
  }
  scores_reduce_kernel<<<dim3(nspans, out_rows, p.requests), kReduceThreads, 0, stream>>>(p, s.limit, s.chunk, s.nchunks,
                                                                                          span, s.ld);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
