#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/decode_attention.cuh"

namespace specontext::kernels {
namespace {

// Why this shape (H200: 4.8 TB/s HBM, 132 SMs):
// - Decode attention reads every valid K/V byte once and does ~2 FLOP per byte per query head,
//   so it is purely HBM-bound; the only goals are (a) touch each K/V byte once per GQA group,
//   (b) keep enough bytes in flight on every SM, (c) spend few instructions per byte.
// - A "lane group" of head_dim / 8 lanes owns one key at a time; each lane loads 16 bytes
//   (8 bf16) of K and of V, the warp's loads cover consecutive key rows (fully coalesced).
//   Each thread issues all kKeysPerGroup K and V loads of an iteration before the first use
//   (2 * kKeysPerGroup * 16 B in flight per thread, about 3 resident blocks per SM). Plain
//   register loads (ld.global.nc, L1::no_allocate, L2::256B prefetch) were chosen because no
//   byte is reused across threads. Measured: ~61% of HBM peak at R=32, S=16384 (see the
//   report); the bytes in flight are capped by registers (q and accumulators of the whole
//   group live there), so the next step is a cp.async/TMA multi-stage shared-memory pipeline
//   that keeps more bytes in flight without registers.
// - All query heads of the group live in registers (their 8-element slice), so one K/V load
//   feeds `group` dot products; the scale (times log2 e) is folded into q and the softmax uses
//   exp2. Groups larger than kMaxGroup are split over blockIdx.y (K/V then read once per batch).
// - Split-K: the chunk length is chosen per launch so that small batches still spread over all
//   SMs (down to 64 keys a chunk) while the number of chunks per request stays bounded (the
//   workspace is at most ~kTargetRequestChunks + requests rows per query head).
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkQuantum = 64;            // keys; the smallest chunk
constexpr int kTargetRequestChunks = 1024;  // requests * chunks aimed at (bounds the workspace)
constexpr float kLog2e = 1.4426950408889634f;

int chunk_cap(int requests, int max_context) {
  const int by_length = (max_context + kChunkQuantum - 1) / kChunkQuantum;
  const int by_requests = std::max(1, (kTargetRequestChunks + requests - 1) / requests);
  return std::max(1, std::min(by_length, by_requests));
}

__device__ __forceinline__ uint4 load_stream(const std::uint16_t* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y), f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z), f[5] = bf16_hi(v.z), f[6] = bf16_lo(v.w), f[7] = bf16_hi(v.w);
}

__device__ __forceinline__ float dot8(const float (&q)[8], const uint4& k) {
  float s = q[0] * bf16_lo(k.x);
  s = fmaf(q[1], bf16_hi(k.x), s);
  s = fmaf(q[2], bf16_lo(k.y), s);
  s = fmaf(q[3], bf16_hi(k.y), s);
  s = fmaf(q[4], bf16_lo(k.z), s);
  s = fmaf(q[5], bf16_hi(k.z), s);
  s = fmaf(q[6], bf16_lo(k.w), s);
  s = fmaf(q[7], bf16_hi(k.w), s);
  return s;
}

__device__ __forceinline__ int clamp_length(const DecodeAttentionParams& p, int r) {
  const int len = p.lengths[r];
  return len < 0 ? 0 : (len > p.max_context ? p.max_context : len);
}

// Grid: x = chunk, y = kv_head * head_batches + batch, z = request. Writes, per query head of the
// batch, the chunk's max (log2 units), sum and unnormalised accumulator to the workspace, or the
// normalised output directly when the launch has a single chunk.
template <int kHeadDim, int kMaxGroup>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(DecodeAttentionParams p, int group, int head_batches,
                                                                int chunk, int nchunks) {
  // Each lane owns kDims consecutive dims of a key (kVecs 16-byte loads of K and of V). Measured
  // on the H200 (R=32, S=16384, 32/8 heads): kVecs = 2 (fewer redundant softmax instructions,
  // 206 registers) and a 4-blocks-per-SM register cap (spills) were both slower than this:
  // resident warps, i.e. loads in flight, matter more than instruction count here.
  constexpr int kVecs = 1;
  constexpr int kDims = 8 * kVecs;
  constexpr int kLanes = kHeadDim / kDims;              // lanes per key
  constexpr int kGroupsPerWarp = 32 / kLanes;           // keys a warp touches per load instruction
  constexpr int kKeysPerGroup = kMaxGroup > 4 ? 2 : 4;  // keys in flight per lane group
  constexpr int kKeysPerWarp = kGroupsPerWarp * kKeysPerGroup;

  const int r = blockIdx.z;
  const int kvh = blockIdx.y / head_batches;
  const int h0 = kvh * group + (blockIdx.y % head_batches) * kMaxGroup;
  const int nh = min(kMaxGroup, kvh * group + group - h0);
  const int c = blockIdx.x;
  const int len = clamp_length(p, r);
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

  const float qscale = p.scale * kLog2e;
  float q[kMaxGroup][kVecs][8];
  const std::uint16_t* qrow = p.q + r * p.q_row_stride + static_cast<std::int64_t>(h0) * kHeadDim + d0;
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (g < nh) {
        unpack8(*reinterpret_cast<const uint4*>(qrow + g * kHeadDim + u * 8), q[g][u]);
#pragma unroll
        for (int j = 0; j < 8; ++j) q[g][u][j] *= qscale;
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) q[g][u][j] = 0.0f;
      }
    }
  }

  const std::int64_t slot = p.slots[r];
  const std::int64_t base = slot * p.kv_request_stride + kvh * p.kv_head_stride + d0;
  const std::uint16_t* kbase = p.k_cache + base;
  const std::uint16_t* vbase = p.v_cache + base;

  float m[kMaxGroup], l[kMaxGroup], o[kMaxGroup][kDims];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < kDims; ++j) o[g][j] = 0.0f;
  }

  // The trip count is uniform across a warp (the shuffles below need every lane); keys past
  // key1 are masked, and their K/V are never loaded (they may hold anything, NaN included).
  for (int wbase = key0 + warp * kKeysPerWarp; wbase < key1; wbase += kWarps * kKeysPerWarp) {
    uint4 kr[kKeysPerGroup][kVecs], vr[kKeysPerGroup][kVecs];
#pragma unroll
    for (int t = 0; t < kKeysPerGroup; ++t) {
      const int key = wbase + t * kGroupsPerWarp + gw;
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (key < key1) {
          kr[t][u] = load_stream(kbase + static_cast<std::int64_t>(key) * kHeadDim + u * 8);
          vr[t][u] = load_stream(vbase + static_cast<std::int64_t>(key) * kHeadDim + u * 8);
        } else {
          kr[t][u] = make_uint4(0, 0, 0, 0);
          vr[t][u] = make_uint4(0, 0, 0, 0);
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= nh) continue;  // uniform across the block
      float s[kKeysPerGroup];
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
        s[t] = dot8(q[g][0], kr[t][0]);
#pragma unroll
        for (int u = 1; u < kVecs; ++u) s[t] += dot8(q[g][u], kr[t][u]);
      }
#pragma unroll
      for (int off = kLanes / 2; off > 0; off /= 2)
#pragma unroll
        for (int t = 0; t < kKeysPerGroup; ++t) s[t] += __shfl_xor_sync(0xffffffffu, s[t], off);
      float mt = m[g];
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
        if (wbase + t * kGroupsPerWarp + gw >= key1) s[t] = -INFINITY;
        mt = fmaxf(mt, s[t]);
      }
      // mt is -inf only when this lane group has seen no valid key yet; then nothing changes.
      const float mref = mt == -INFINITY ? 0.0f : mt;
      const float alpha = exp2f(m[g] - mref);
      float pt[kKeysPerGroup];
      float psum = 0.0f;
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
        pt[t] = exp2f(s[t] - mref);
        psum += pt[t];
      }
      l[g] = l[g] * alpha + psum;
      m[g] = mt;
#pragma unroll
      for (int j = 0; j < kDims; ++j) o[g][j] *= alpha;
#pragma unroll
      for (int t = 0; t < kKeysPerGroup; ++t) {
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          float v[8];
          unpack8(vr[t][u], v);
#pragma unroll
          for (int j = 0; j < 8; ++j) o[g][u * 8 + j] = fmaf(pt[t], v[j], o[g][u * 8 + j]);
        }
      }
    }
  }

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

  __shared__ float sm_o[kWarps][kMaxGroup][kHeadDim];
  __shared__ float sm_m[kWarps][kMaxGroup];
  __shared__ float sm_l[kWarps][kMaxGroup];
  if (gw == 0) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= nh) continue;
#pragma unroll
      for (int j = 0; j < kDims; ++j) sm_o[warp][g][d0 + j] = o[g][j];
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
      acc += sm_o[w][g][d] * e;
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

// Grid: x = query head, y = request. Combines the request's chunks: out = sum_c e^(m_c - M) acc_c
// / sum_c e^(m_c - M) l_c.
__global__ void __launch_bounds__(kThreads) decode_merge_kernel(DecodeAttentionParams p, int chunk, int nchunks) {
  const int h = blockIdx.x, r = blockIdx.y;
  const int hd = p.head_dim;
  const int tid = threadIdx.x, lane = tid % 32;
  const int len = clamp_length(p, r);
  const int n = min((len + chunk - 1) / chunk, nchunks);
  std::uint16_t* out = p.out + r * p.out_row_stride + static_cast<std::int64_t>(h) * hd;
  if (n == 0) {
    for (int d = tid; d < hd; d += kThreads) out[d] = 0;
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

  // Threads split as (chunk slice, dim): kThreads / hd slices of the chunks for every dim.
  const int parts = kThreads / hd;
  const int d = tid % hd, part = tid / hd;
  float a = 0.0f;
  for (int c = part; c < n; c += parts) a += acc[static_cast<std::int64_t>(c) * hd + d] * exp2f(ml[2 * c] - mx);
  __shared__ float partial[kThreads];
  partial[tid] = a;
  __syncthreads();
  if (part == 0) {
    for (int k = 1; k < parts; ++k) a += partial[k * hd + d];
    out[d] = __bfloat16_as_ushort(__float2bfloat16_rn(a / sum));
  }
}

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("decode_attention: " + what); }
// The message is built only on failure: launches sit on the decode critical path.
#define DECODE_REQUIRE(ok, what) \
  do {                           \
    if (!(ok)) fail(what);       \
  } while (0)

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <int kHeadDim>
void launch_split(const DecodeAttentionParams& p, int group, int chunk, int nchunks, cudaStream_t stream) {
  const int max_group = group <= 4 ? 4 : 8;
  const int head_batches = (group + max_group - 1) / max_group;
  const dim3 grid(nchunks, p.kv_heads * head_batches, p.requests);
  if (max_group == 4)
    decode_split_kernel<kHeadDim, 4><<<grid, kThreads, 0, stream>>>(p, group, head_batches, chunk, nchunks);
  else
    decode_split_kernel<kHeadDim, 8><<<grid, kThreads, 0, stream>>>(p, group, head_batches, chunk, nchunks);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::size_t decode_attention_workspace_bytes(int requests, int q_heads, int head_dim, int max_context) {
  if (requests <= 0 || q_heads <= 0 || head_dim <= 0 || max_context <= 0) return 0;
  return static_cast<std::size_t>(requests) * q_heads * chunk_cap(requests, max_context) * (head_dim + 2) * sizeof(float);
}

void launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  DECODE_REQUIRE(p.requests >= 0, "requests must be >= 0, got " + std::to_string(p.requests));
  if (p.requests == 0) return;
  DECODE_REQUIRE(p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128,
          "head_dim " + std::to_string(p.head_dim) + " is not supported (32, 64 or 128)");
  DECODE_REQUIRE(p.q_heads > 0 && p.kv_heads > 0 && p.q_heads % p.kv_heads == 0,
          "q_heads (" + std::to_string(p.q_heads) + ") must be a positive multiple of kv_heads (" +
              std::to_string(p.kv_heads) + ")");
  DECODE_REQUIRE(p.requests <= 65535, "requests must be <= 65535, got " + std::to_string(p.requests));
  DECODE_REQUIRE(p.max_context > 0, "max_context must be > 0");
  DECODE_REQUIRE(p.max_length >= 0, "max_length must be >= 0 (0: max_context)");
  DECODE_REQUIRE(p.scale > 0.0f && std::isfinite(p.scale), "scale must be positive and finite");
  DECODE_REQUIRE(p.q && p.k_cache && p.v_cache && p.slots && p.lengths && p.out, "a tensor pointer is null");
  DECODE_REQUIRE(aligned16(p.q) && aligned16(p.k_cache) && aligned16(p.v_cache), "q, k_cache and v_cache must be 16-byte aligned");
  const std::int64_t hd = p.head_dim;
  DECODE_REQUIRE(p.q_row_stride % 8 == 0 && p.q_row_stride >= p.q_heads * hd, "q_row_stride must be a multiple of 8 and >= q_heads * head_dim");
  DECODE_REQUIRE(p.out_row_stride >= p.q_heads * hd, "out_row_stride must be >= q_heads * head_dim");
  DECODE_REQUIRE(p.kv_head_stride % 8 == 0 && p.kv_head_stride >= p.max_context * hd,
          "kv_head_stride must be a multiple of 8 and >= max_context * head_dim");
  DECODE_REQUIRE(p.kv_request_stride % 8 == 0 && p.kv_request_stride >= p.kv_heads * p.kv_head_stride,
          "kv_request_stride must be a multiple of 8 and >= kv_heads * kv_head_stride");

  const int max_len = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  const int cap = chunk_cap(p.requests, max_len);
  const int per_chunk = (max_len + cap - 1) / cap;
  const int chunk = (per_chunk + kChunkQuantum - 1) / kChunkQuantum * kChunkQuantum;
  const int nchunks = (max_len + chunk - 1) / chunk;
  if (nchunks > 1) {
    const std::size_t need = static_cast<std::size_t>(p.requests) * p.q_heads * nchunks * (hd + 2) * sizeof(float);
    DECODE_REQUIRE(p.workspace != nullptr && aligned16(p.workspace), "workspace is null or not 16-byte aligned");
    DECODE_REQUIRE(p.workspace_bytes >= need, "workspace of " + std::to_string(p.workspace_bytes) + " bytes is too small (" +
                                           std::to_string(need) + " needed; see decode_attention_workspace_bytes)");
  }

  const int group = p.q_heads / p.kv_heads;
  switch (p.head_dim) {
    case 32: launch_split<32>(p, group, chunk, nchunks, stream); break;
    case 64: launch_split<64>(p, group, chunk, nchunks, stream); break;
    default: launch_split<128>(p, group, chunk, nchunks, stream); break;
  }
  if (nchunks > 1) {
    decode_merge_kernel<<<dim3(p.q_heads, p.requests), kThreads, 0, stream>>>(p, chunk, nchunks);
    SPECONTEXT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace specontext::kernels
