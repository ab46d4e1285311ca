// One request's decode step as one persistent kernel, an alternative to the kernel chain
// (engine/cuda_backend.cu) that CudaBackendOptions::persistent_decode and `specontext bench
// --persistent` turn on. Why try it: at R = 1 the step is ~15 GB of weights read once, and the chain
// loses ~20 us a layer between its eight kernels, 1.4-4 us at a time (bench/README, "Back on the
// H200"): each projection ramps up and drains, and the latency-bound pieces between them (the
// norms, decode attention, its merge) leave HBM idle. Here the weights and the K/V history stream
// through one ring that does not stop at the phases' boundaries. Measured (bench/README, "One
// request's step as one persistent kernel"): on an H100 it is 4-5% slower than the chain; each
// projection's epilogue and grid barrier take ~5.5 us on block 0's clock (its wait for the slowest
// block included), more than the ring hides.
//
// Design:
// * One block per SM, 15 consumer warps and one producer warp. The producer's lane 0 walks the
//   step's reads in order (each layer's QKV rows, its attention items' K/V history, O, gate_up,
//   down; then the LM head) and copies this block's share into a ring of shared-memory stages with
//   bulk asynchronous copies (cp.async.bulk, completion counted on an mbarrier per stage, L2
//   evict-first). None of it depends on the step's activations, so the producer runs ahead by the
//   whole ring (~170 KB an SM): while the consumers normalise, attend or wait at a grid barrier,
//   the next phase's bytes keep arriving, and the consumers, faster than HBM from shared memory,
//   catch up after. How far that hides a gap: only the ring beyond what HBM latency keeps in flight.
// * The consumers run the phases in order, separated by a grid-wide barrier (cooperative groups'
//   pattern) where a phase reads what other blocks wrote:
//     embedding -> | per layer: input norm, QKV + RoPE + KV append | attention partials | merge |
//     O + residual | post norm, gate_up + SwiGLU | down + residual | -> final norm, LM head.
//   Every block computes the norms for itself (the residual is 16 KB, from L2), so they need no
//   barrier of their own.
// * Projections: each block owns a contiguous range of output units: rows, or the row pairs an
//   epilogue combines (gate j and up j; dims i and i + head_dim / 2 of a head for RoPE), so the
//   epilogues (kernels/rope_math.cuh, swiglu_math.cuh) run in the block that holds both rows, as
//   small_gemm's fused epilogues do. A row's dot product is one warp's where a stage holds several
//   rows, and all warps' (partial sums added in warp order) where it holds one (stage_dots). Sums
//   have a fixed order, so results are deterministic.
// * Attention: work items (KV head, up to 4 of its query heads, chunk of the keys), about one per
//   block; its older keys come through the ring, the newest (appended by this step's QKV epilogue)
//   from global memory; a warp keeps an online softmax over its keys, the block combines its warps,
//   and the merge phase combines the chunks per head.
// * Data other blocks wrote during the kernel (residual, Q, the new cache row, partials, the
//   attention output, the activation) is read with ld.global.cg: L1 is not coherent across SMs.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cp_async.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/persistent_decode.cuh"
#include "kernels/rope_math.cuh"
#include "kernels/swiglu_math.cuh"

namespace specontext::kernels {
namespace {

// 15 consumer warps and the producer: 16 warps, 4 on each of the SM's 4 schedulers, whose register
// files (16K each) then allow 128 registers a thread (17 warps would put 5 on one: 96).
constexpr int kConsumerWarps = 15;
constexpr int kConsumerThreads = kConsumerWarps * 32;
constexpr int kThreads = kConsumerThreads + 32;  // + the producer warp
constexpr int kMaxStages = 8;
// Query heads of one KV head an attention item covers: 4, or 2 at head_dim 256 (registers: a lane
// holds head_dim / 32 dims of each head's query and output).
constexpr int kHeadsPerItem = 4;
__host__ __device__ constexpr int heads_per_item(int head_dim) { return head_dim <= 128 ? kHeadsPerItem : 2; }
constexpr int kBarrierBytes = 256;

// Where everything sits in dynamic shared memory; computed on the host for the launch.
struct Layout {
  int stages = 0, stage_bytes = 0;
  int barriers = 0;  // offset of full[stages], empty[stages] (8 bytes each)
  int scratch = 0;   // the projection's input (bf16 [max_k]) or attention's per-warp partials
  int rowout = 0;    // the block's projection results, fp32 [max_rows]
  int reduce = 0;    // 32 fp32
  int part = 0;      // per stage: a one-row stage's per-warp partial sums [warps] fp32, and a count
  int bytes = 0;
  int chunks = 0;    // attention's key chunks per item group
};

enum class Unit : int { Row, QkvPair, GateUpPair };

// One projection as the ring sees it: W [units x rows_per_unit rows, k], and which rows a unit is.
struct Gemv {
  const std::uint16_t* w;
  int k;
  int units;
  Unit unit;
  int pair;  // QkvPair: head_dim / 2; GateUpPair: ffn
};

__device__ __forceinline__ int rows_per_unit(const Gemv& g) { return g.unit == Unit::Row ? 1 : 2; }

__device__ __forceinline__ std::int64_t row_of(const Gemv& g, int unit, int which) {
  switch (g.unit) {
    case Unit::QkvPair: return static_cast<std::int64_t>(unit / g.pair) * 2 * g.pair + unit % g.pair + which * g.pair;
    case Unit::GateUpPair: return unit + static_cast<std::int64_t>(which) * g.pair;
    default: return unit;
  }
}

__device__ __forceinline__ void block_units(int units, int& u0, int& u1) {
  u0 = static_cast<int>(static_cast<std::int64_t>(units) * blockIdx.x / gridDim.x);
  u1 = static_cast<int>(static_cast<std::int64_t>(units) * (blockIdx.x + 1) / gridDim.x);
}

__device__ __forceinline__ Gemv layer_gemv(const PersistentDecodeParams& p, const PersistentDecodeLayer& L, int which) {
  const int q_dim = p.q_heads * p.head_dim, qkv_dim = q_dim + 2 * p.kv_heads * p.head_dim;
  switch (which) {
    case 0: return {L.wqkv, p.hidden, qkv_dim / 2, Unit::QkvPair, p.head_dim / 2};
    case 1: return {L.wo, q_dim, p.hidden, Unit::Row, 0};
    case 2: return {L.wgate_up, p.hidden, p.ffn, Unit::GateUpPair, p.ffn};
    default: return {L.wdown, p.ffn, p.hidden, Unit::Row, 0};
  }
}

__device__ __forceinline__ Gemv lm_gemv(const PersistentDecodeParams& p) { return {p.lm_head, p.hidden, p.vocab, Unit::Row, 0}; }

// ---- shared-memory barriers and bulk copies (sm_90) ----

__device__ __forceinline__ unsigned smem_addr(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(std::uint64_t* b, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(std::uint64_t* b, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(std::uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(std::uint64_t* b, unsigned parity) {
  unsigned done = 0;
  do {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(smem_addr(b)), "r"(parity)
        : "memory");
  } while (!done);
}
// Weights are read once a step: evict them from L2 first, so the KV cache and the activations stay.
__device__ __forceinline__ std::uint64_t evict_first_policy() {
  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes, std::uint64_t* bar, std::uint64_t policy) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
               : "memory");
}

// The consumers' own barrier (the producer warp never joins it).
__device__ __forceinline__ void consumer_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumerThreads) : "memory"); }

// Every block's consumers: cooperative groups' grid sync on a counter zeroed before the launch.
__device__ __forceinline__ void grid_barrier(unsigned* counter, unsigned& epoch) {
  consumer_sync();
  if (threadIdx.x == 0) {
    epoch += gridDim.x;
    __threadfence();
    atomicAdd(counter, 1u);
    unsigned seen;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    } while (seen < epoch);
    __threadfence();
  }
  consumer_sync();
}

__device__ __forceinline__ float bf(std::uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ std::uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
__device__ __forceinline__ float round_bf(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the consumer threads, the same order every time.
__device__ float consumer_sum(float v, float* reduce) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) reduce[threadIdx.x >> 5] = v;
  consumer_sync();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kConsumerWarps; ++w) total += reduce[w];
  consumer_sync();
  return total;
}

// x = bf16(weight * bf16(h / rms(h))), as kernels/add_rmsnorm.cu rounds. Every load of h is issued
// before the first is used (one L2 round trip, not one per loop iteration): the consumers stall here.
constexpr int kNormPieces = 4;  // float4s a thread holds: hidden <= 4 x 4 x 480 = 7680 in one pass
__device__ void norm_into(const float* h, const std::uint16_t* weight, int hidden, float eps, std::uint16_t* x, float* reduce) {
  const int quads = hidden / 4;
  float4 v[kNormPieces];
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kNormPieces; ++k) {
    const int i = threadIdx.x + k * kConsumerThreads;
    v[k] = i < quads ? __ldcg(reinterpret_cast<const float4*>(h) + i) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int k = 0; k < kNormPieces; ++k) sq += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
  for (int i = threadIdx.x + kNormPieces * kConsumerThreads; i < quads; i += kConsumerThreads) {
    const float4 r = __ldcg(reinterpret_cast<const float4*>(h) + i);
    sq += r.x * r.x + r.y * r.y + r.z * r.z + r.w * r.w;
  }
  const float inv = 1.0f / sqrtf(consumer_sum(sq, reduce) / static_cast<float>(hidden) + eps);
  auto write4 = [&](int i, const float4& r) {
    const float f[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) x[4 * i + e] = to_bf(bf(weight[4 * i + e]) * round_bf(f[e] * inv));
  };
#pragma unroll
  for (int k = 0; k < kNormPieces; ++k) {
    const int i = threadIdx.x + k * kConsumerThreads;
    if (i < quads) write4(i, v[k]);
  }
  for (int i = threadIdx.x + kNormPieces * kConsumerThreads; i < quads; i += kConsumerThreads) write4(i, __ldcg(reinterpret_cast<const float4*>(h) + i));
  consumer_sync();
}

// x = a bf16 vector another block wrote (the attention output, the activation).
__device__ void copy_into(const std::uint16_t* src, int n, std::uint16_t* x) {
  for (int i = threadIdx.x; i < n / 8; i += kConsumerThreads) reinterpret_cast<uint4*>(x)[i] = __ldcg(reinterpret_cast<const uint4*>(src) + i);
  consumer_sync();
}

// ---- the weight ring ----

struct Ring {
  unsigned char* stages;
  std::uint64_t* full;
  std::uint64_t* empty;
  int count, stage_bytes;
  float* part;  // per slot: a one-row stage's kConsumerWarps partial sums
  int* done;    // per slot: the warps that have written theirs
  unsigned next = 0;  // stages used so far: slot next % count, round next / count
};

// Producer: this block's rows of g into the ring, as many rows a stage as fit.
__device__ void produce(const Gemv& g, Ring& ring, std::uint64_t policy) {
  int u0, u1;
  block_units(g.units, u0, u1);
  const int per_unit = rows_per_unit(g), rows = (u1 - u0) * per_unit;
  const unsigned row_bytes = static_cast<unsigned>(g.k) * 2u;
  const int per_stage = ring.stage_bytes / static_cast<int>(row_bytes);
  for (int t0 = 0; t0 < rows; t0 += per_stage, ++ring.next) {
    const unsigned slot = ring.next % ring.count, round = ring.next / ring.count;
    if (round > 0) mbar_wait(ring.empty + slot, (round - 1) & 1);
    const int n = min(per_stage, rows - t0);
    mbar_expect_tx(ring.full + slot, row_bytes * n);
    for (int i = 0; i < n; ++i) {
      const int t = t0 + i;
      const std::uint16_t* src = g.w + row_of(g, u0 + t / per_unit, t % per_unit) * g.k;
      bulk_copy(ring.stages + static_cast<std::size_t>(slot) * ring.stage_bytes + i * row_bytes, src, row_bytes, ring.full + slot, policy);
    }
  }
}

// The dot products of a stage's rows with x, one fp32 result per row into out[row]. Two ways:
// * a stage of several rows (K <= stage / 2: 4096 of the 8B shape, 3 rows a stage): a warp a row,
//   its lanes striding 16 bytes along it; the stage's rows go to different warps, and the warps
//   work on different stages at once;
// * a stage of one row (the down projection's 14336, where one warp a row ran at 2/3 of the stream
//   rate; also a phase's last stage when one row is left): every warp takes the row's 512-byte
//   pieces w, w + 15, ..., leaves its partial sum in part[w], and the last warp to finish adds the
//   15 in warp order (deterministic).
// Either way a warp does the same work in the same order every run.
__device__ __forceinline__ void stage_dots(const uint4* stage, int n, int chunks, const uint4* x4, float* part, int* done, float* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  auto dot = [&](const uint4* w4, int first_piece, int piece_step) {
    float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll 4
    for (int c = first_piece * 32 + lane; c < chunks; c += piece_step * 32) {
      const uint4 a = w4[c], b = x4[c];
      const unsigned wa[4] = {a.x, a.y, a.z, a.w}, xb[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc0 = fmaf(bf16_lo(wa[j]), bf16_lo(xb[j]), acc0);
        acc1 = fmaf(bf16_hi(wa[j]), bf16_hi(xb[j]), acc1);
      }
    }
    return warp_sum(acc0 + acc1);
  };
  if (n > 1) {
    for (int r = warp; r < n; r += kConsumerWarps) {
      const float y = dot(stage + static_cast<std::size_t>(r) * chunks, 0, 1);
      if (lane == 0) out[r] = y;
    }
    return;
  }
  const float y = dot(stage, warp, kConsumerWarps);
  int last = 0;
  if (lane == 0) {
    part[warp] = y;
    __threadfence_block();
    last = atomicAdd(done, 1) == kConsumerWarps - 1;
  }
  if (__shfl_sync(0xffffffffu, last, 0) && lane == 0) {
    __threadfence_block();
    float sum = 0.0f;
    for (int w = 0; w < kConsumerWarps; ++w) sum += part[w];
    *out = sum;
    *done = 0;
  }
}

// Consumers: this block's rows of g from the ring, results into rowout[local row]; then every
// consumer has them.
__device__ void consume(const Gemv& g, Ring& ring, const std::uint16_t* x, float* rowout) {
  int u0, u1;
  block_units(g.units, u0, u1);
  const int rows = (u1 - u0) * rows_per_unit(g);
  const int per_stage = ring.stage_bytes / (g.k * 2);
  for (int t0 = 0; t0 < rows; t0 += per_stage, ++ring.next) {
    const unsigned slot = ring.next % ring.count, round = ring.next / ring.count;
    mbar_wait(ring.full + slot, round & 1);
    const auto* stage = reinterpret_cast<const uint4*>(ring.stages + static_cast<std::size_t>(slot) * ring.stage_bytes);
    stage_dots(stage, min(per_stage, rows - t0), g.k / 8, reinterpret_cast<const uint4*>(x), ring.part + slot * kConsumerWarps,
               ring.done + slot, rowout + t0);
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbar_arrive(ring.empty + slot);
  }
  consumer_sync();
}

// ---- attention ----

// Attention's work items: (KV head g, query heads [h0, h0 + heads) of its group, chunk c of the
// keys: [begin, end)). The producer and the consumers walk the same items of a block.
struct AttentionItem {
  int g, h0, heads, c, begin, end;
};

__device__ __forceinline__ int attention_items(const PersistentDecodeParams& p, int chunks) {
  const int per_item = heads_per_item(p.head_dim), group = p.q_heads / p.kv_heads;
  return p.kv_heads * ((group + per_item - 1) / per_item) * chunks;
}

__device__ __forceinline__ AttentionItem attention_item(const PersistentDecodeParams& p, int chunks, int length, int item) {
  const int per_item = heads_per_item(p.head_dim), group = p.q_heads / p.kv_heads, per_group = (group + per_item - 1) / per_item;
  const int chunk = (length + chunks - 1) / chunks, sub = item / chunks % per_group;
  AttentionItem it;
  it.c = item % chunks;
  it.g = item / chunks / per_group;
  it.h0 = it.g * group + sub * per_item;
  it.heads = min(per_item, group - sub * per_item);
  it.begin = min(length, it.c * chunk);
  it.end = min(length, it.begin + chunk);
  return it;
}

// Keys a ring stage holds: K rows in its first half, V rows in its second.
__device__ __forceinline__ int keys_per_stage(const Ring& ring, int head_dim) { return ring.stage_bytes / 2 / (head_dim * 2); }

// Producer: the K and V rows of this block's items that predate the step, through the ring like
// the weights (so attention reads shared memory, and HBM streams on while the consumers wait).
// The newest row (position length - 1) is written during the kernel, by the QKV epilogue: the
// consumers read it from global memory.
__device__ void produce_kv(const PersistentDecodeParams& p, const PersistentDecodeLayer& L, int chunks, Ring& ring, std::uint64_t policy) {
  const int length = __ldg(p.lengths), slot = __ldg(p.slots), hd = p.head_dim, per_stage = keys_per_stage(ring, hd);
  const int items = attention_items(p, chunks);
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const AttentionItem it = attention_item(p, chunks, length, item);
    const int history_end = min(it.end, length - 1);
    const std::int64_t base = slot * L.kv_request_stride + it.g * L.kv_head_stride;
    for (int k0 = it.begin; k0 < history_end; k0 += per_stage, ++ring.next) {
      const unsigned s = ring.next % ring.count, round = ring.next / ring.count;
      if (round > 0) mbar_wait(ring.empty + s, (round - 1) & 1);
      const unsigned bytes = static_cast<unsigned>(min(per_stage, history_end - k0) * hd * 2);
      mbar_expect_tx(ring.full + s, 2 * bytes);
      unsigned char* stage = ring.stages + static_cast<std::size_t>(s) * ring.stage_bytes;
      bulk_copy(stage, L.k_cache + base + static_cast<std::int64_t>(k0) * hd, bytes, ring.full + s, policy);
      bulk_copy(stage + ring.stage_bytes / 2, L.v_cache + base + static_cast<std::int64_t>(k0) * hd, bytes, ring.full + s, policy);
    }
  }
}

// D bf16 at p as fp32: from global memory another block wrote during the kernel (ld.global.cg), or
// from shared memory.
template <int D, bool kGlobal>
__device__ __forceinline__ void load_dims(const std::uint16_t* p, float (&f)[D]) {
  if constexpr (D == 1) {
    f[0] = bf(kGlobal ? __ldcg(p) : *p);
  } else if constexpr (D == 2) {
    const unsigned v = kGlobal ? __ldcg(reinterpret_cast<const unsigned*>(p)) : *reinterpret_cast<const unsigned*>(p);
    f[0] = bf16_lo(v), f[1] = bf16_hi(v);
  } else if constexpr (D == 4) {
    const uint2 v = kGlobal ? __ldcg(reinterpret_cast<const uint2*>(p)) : *reinterpret_cast<const uint2*>(p);
    f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y), f[3] = bf16_hi(v.y);
  } else {
    unpack8(kGlobal ? __ldcg(reinterpret_cast<const uint4*>(p)) : *reinterpret_cast<const uint4*>(p), f);
  }
}

// Keys into a warp's online softmax over its heads (a lane holds D dims of each); scores in log2
// units. Every head is computed (a missing one has a zero query, its results unused), so the heads'
// shuffle chains, and both keys' scores, can overlap.
template <int D, int kHeads, int kKeys>
__device__ __forceinline__ void attend_keys(const float (&q)[kHeads][D], const float (&kf)[kKeys][D], const float (&vf)[kKeys][D], int keys,
                                            float (&m)[kHeads], float (&l)[kHeads], float (&o)[kHeads][D]) {
  float s[kKeys][kHeads];
#pragma unroll
  for (int u = 0; u < kKeys; ++u)
#pragma unroll
    for (int j = 0; j < kHeads; ++j) {
      float a = 0.0f;
#pragma unroll
      for (int d = 0; d < D; ++d) a = fmaf(q[j][d], kf[u][d], a);
      s[u][j] = a;
    }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
#pragma unroll
    for (int u = 0; u < kKeys; ++u)
#pragma unroll
      for (int j = 0; j < kHeads; ++j) s[u][j] += __shfl_xor_sync(0xffffffffu, s[u][j], off);
#pragma unroll
  for (int u = 0; u < kKeys; ++u) {
    if (u >= keys) break;
#pragma unroll
    for (int j = 0; j < kHeads; ++j) {
      const float mn = fmaxf(m[j], s[u][j]), corr = exp2f(m[j] - mn), pr = exp2f(s[u][j] - mn);
      l[j] = l[j] * corr + pr;
#pragma unroll
      for (int d = 0; d < D; ++d) o[j][d] = fmaf(pr, vf[u][d], o[j][d] * corr);
      m[j] = mn;
    }
  }
}

// One item: the warps share its keys (the older ones from the ring, the newest from global memory),
// each keeping an online softmax; then the block combines its warps into partials[(h * chunks + c) *
// (head_dim + 2)] = (m, l, o[head_dim]) per head.
template <int D>
__device__ void attend_item(const PersistentDecodeParams& p, const PersistentDecodeLayer& L, const AttentionItem& it, int chunks, int length,
                            Ring& ring, float* scratch, float* partials) {
  constexpr int kHeads = heads_per_item(32 * D);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = p.head_dim;
  const float q_scale = p.scale * 1.4426950408889634f;
  float q[kHeads][D], m[kHeads], l[kHeads], o[kHeads][D];
#pragma unroll
  for (int j = 0; j < kHeads; ++j) {
    m[j] = -INFINITY, l[j] = 0.0f;
#pragma unroll
    for (int d = 0; d < D; ++d) q[j][d] = 0.0f, o[j][d] = 0.0f;
    if (j < it.heads) {
      load_dims<D, true>(p.qkv + static_cast<std::size_t>(it.h0 + j) * hd + lane * D, q[j]);
#pragma unroll
      for (int d = 0; d < D; ++d) q[j][d] *= q_scale;
    }
  }
  const int per_stage = keys_per_stage(ring, hd), history_end = min(it.end, length - 1);
  for (int k0 = it.begin; k0 < history_end; k0 += per_stage, ++ring.next) {
    const unsigned s = ring.next % ring.count, round = ring.next / ring.count;
    mbar_wait(ring.full + s, round & 1);
    const int n = min(per_stage, history_end - k0);
    const auto* keys = reinterpret_cast<const std::uint16_t*>(ring.stages + static_cast<std::size_t>(s) * ring.stage_bytes);
    const auto* values = reinterpret_cast<const std::uint16_t*>(ring.stages + static_cast<std::size_t>(s) * ring.stage_bytes + ring.stage_bytes / 2);
    for (int i = warp; i < n; i += 2 * kConsumerWarps) {
      const int second = i + kConsumerWarps < n ? i + kConsumerWarps : i;  // a lone last key is read twice, used once
      float kf[2][D], vf[2][D];
      load_dims<D, false>(keys + i * hd + lane * D, kf[0]);
      load_dims<D, false>(values + i * hd + lane * D, vf[0]);
      load_dims<D, false>(keys + second * hd + lane * D, kf[1]);
      load_dims<D, false>(values + second * hd + lane * D, vf[1]);
      attend_keys<D, kHeads, 2>(q, kf, vf, second == i ? 1 : 2, m, l, o);
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(ring.empty + s);
  }
  const int newest = length - 1;
  if (newest >= it.begin && newest < it.end && warp == kConsumerWarps - 1) {
    const std::int64_t row = __ldg(p.slots) * L.kv_request_stride + it.g * L.kv_head_stride + static_cast<std::int64_t>(newest) * hd + lane * D;
    float kf[1][D], vf[1][D];
    load_dims<D, true>(L.k_cache + row, kf[0]);
    load_dims<D, true>(L.v_cache + row, vf[0]);
    attend_keys<D, kHeads, 1>(q, kf, vf, 1, m, l, o);
  }
  // The block's warps, combined: scratch[warp][j] = (m, l, o[hd]).
  const int stride = hd + 2;
#pragma unroll
  for (int j = 0; j < kHeads; ++j) {
    if (j >= it.heads) break;
    float* sc = scratch + (warp * kHeadsPerItem + j) * stride;
    if (lane == 0) sc[0] = m[j], sc[1] = l[j];
#pragma unroll
    for (int d = 0; d < D; ++d) sc[2 + lane * D + d] = o[j][d];
  }
  consumer_sync();
  for (int e = threadIdx.x; e < it.heads * hd; e += kConsumerThreads) {
    const int j = e / hd, d = e % hd;
    float big = -INFINITY;
    for (int w = 0; w < kConsumerWarps; ++w) big = fmaxf(big, scratch[(w * kHeadsPerItem + j) * stride]);
    float sum_l = 0.0f, sum_o = 0.0f;
    if (big != -INFINITY) {
      for (int w = 0; w < kConsumerWarps; ++w) {
        const float* sc = scratch + (w * kHeadsPerItem + j) * stride;
        const float f = exp2f(sc[0] - big);
        sum_l = fmaf(f, sc[1], sum_l);
        sum_o = fmaf(f, sc[2 + d], sum_o);
      }
    }
    float* out = partials + (static_cast<std::size_t>(it.h0 + j) * chunks + it.c) * stride;
    if (d == 0) out[0] = big, out[1] = sum_l;
    out[2 + d] = sum_o;
  }
  consumer_sync();
}

template <int D>
__device__ void attention_partials(const PersistentDecodeParams& p, const PersistentDecodeLayer& L, int chunks, Ring& ring, float* scratch,
                                   float* partials) {
  const int length = __ldg(p.lengths), items = attention_items(p, chunks);
  for (int item = blockIdx.x; item < items; item += gridDim.x)
    attend_item<D>(p, L, attention_item(p, chunks, length, item), chunks, length, ring, scratch, partials);
}

// attn_out[h] = the chunks of head h combined; heads spread over the blocks, a thread a dim.
__device__ void attention_merge(const PersistentDecodeParams& p, int chunks, const float* partials) {
  const int hd = p.head_dim, stride = hd + 2, per_block = kConsumerThreads / hd;
  for (int h = blockIdx.x * per_block + threadIdx.x / hd; h < p.q_heads; h += gridDim.x * per_block) {
    if (threadIdx.x / hd >= per_block) break;
    const int d = threadIdx.x % hd;
    const float* part = partials + static_cast<std::size_t>(h) * chunks * stride;
    float big = -INFINITY;
    for (int c = 0; c < chunks; ++c) big = fmaxf(big, __ldcg(part + c * stride));
    float sum_l = 0.0f, sum_o = 0.0f;
    for (int c = 0; c < chunks; ++c) {
      const float* s = part + c * stride;
      const float f = exp2f(__ldcg(s) - big);
      sum_l = fmaf(f, __ldcg(s + 1), sum_l);
      sum_o = fmaf(f, __ldcg(s + 2 + d), sum_o);
    }
    p.attn_out[static_cast<std::size_t>(h) * hd + d] = to_bf(sum_o / sum_l);
  }
}

// ---- epilogues: this block's units of a projection, from rowout ----

__device__ void qkv_epilogue(const PersistentDecodeParams& p, const PersistentDecodeLayer& L, const Gemv& g, const float* rowout) {
  int u0, u1;
  block_units(g.units, u0, u1);
  const int hd = p.head_dim, half = hd / 2, rope_heads = p.q_heads + p.kv_heads;
  const std::int32_t pos = __ldg(p.positions), slot = __ldg(p.slots);
  for (int t = threadIdx.x; t < u1 - u0; t += kConsumerThreads) {
    const int unit = u0 + t, h = unit / half, i = unit % half;
    std::uint16_t y1 = to_bf(rowout[2 * t]), y2 = to_bf(rowout[2 * t + 1]);
    if (h < rope_heads) {
      float cs, sn;
      rope_cos_sin(pos, p.inv_freq[i], p.attention_factor, cs, sn);
      rope_rotate(y1, y2, cs, sn);
    }
    const std::int64_t r = row_of(g, unit, 0);
    p.qkv[r] = y1;
    p.qkv[r + half] = y2;
    if (h >= p.q_heads) {
      const bool is_k = h < rope_heads;
      std::uint16_t* dst = (is_k ? L.k_cache : L.v_cache) + slot * L.kv_request_stride +
                           (is_k ? h - p.q_heads : h - rope_heads) * L.kv_head_stride + static_cast<std::int64_t>(pos) * hd;
      dst[i] = y1;
      dst[i + half] = y2;
    }
  }
}

// residual[row] += bf16(y): the chain adds the projection's bf16 output.
__device__ void residual_epilogue(const PersistentDecodeParams& p, const Gemv& g, const float* rowout) {
  int u0, u1;
  block_units(g.units, u0, u1);
  for (int t = threadIdx.x; t < u1 - u0; t += kConsumerThreads) p.residual[u0 + t] = __ldcg(p.residual + u0 + t) + round_bf(rowout[t]);
}

__device__ void swiglu_epilogue(const PersistentDecodeParams& p, const Gemv& g, const float* rowout) {
  int u0, u1;
  block_units(g.units, u0, u1);
  for (int t = threadIdx.x; t < u1 - u0; t += kConsumerThreads) p.act[u0 + t] = swiglu_bf16(to_bf(rowout[2 * t]), to_bf(rowout[2 * t + 1]));
}

__device__ void logits_epilogue(const PersistentDecodeParams& p, const Gemv& g, const float* rowout) {
  int u0, u1;
  block_units(g.units, u0, u1);
  for (int t = threadIdx.x; t < u1 - u0; t += kConsumerThreads) p.logits[u0 + t] = rowout[t];
}

// D = head_dim / 32, the dims a lane holds in attention: one instantiation each, so that each gets
// its own register allocation (together, inlined into one kernel, they spilled).
template <int D>
__global__ void __launch_bounds__(kThreads, 1) persistent_decode_kernel(PersistentDecodeParams p, Layout lay) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char smem[];
  Ring ring{smem,
            reinterpret_cast<std::uint64_t*>(smem + lay.barriers),
            reinterpret_cast<std::uint64_t*>(smem + lay.barriers) + lay.stages,
            lay.stages,
            lay.stage_bytes,
            reinterpret_cast<float*>(smem + lay.part),
            reinterpret_cast<int*>(smem + lay.part) + lay.stages * kConsumerWarps};
  if (threadIdx.x == 0) {
    for (int s = 0; s < lay.stages; ++s) {
      mbar_init(ring.full + s, 1);
      mbar_init(ring.empty + s, kConsumerWarps);
      ring.done[s] = 0;
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (threadIdx.x >= kConsumerThreads) {  // the producer warp
    if (threadIdx.x == kConsumerThreads) {
      const std::uint64_t policy = evict_first_policy();
      for (int l = 0; l < p.layer_count; ++l) {
        const PersistentDecodeLayer& L = p.layers[l];
        produce(layer_gemv(p, L, 0), ring, policy);
        produce_kv(p, L, lay.chunks, ring, policy);
        for (int which = 1; which < 4; ++which) produce(layer_gemv(p, L, which), ring, policy);
      }
      produce(lm_gemv(p), ring, policy);
    }
    return;
  }

  auto* x = reinterpret_cast<std::uint16_t*>(smem + lay.scratch);
  auto* scratch = reinterpret_cast<float*>(smem + lay.scratch);
  auto* rowout = reinterpret_cast<float*>(smem + lay.rowout);
  auto* reduce = reinterpret_cast<float*>(smem + lay.reduce);
  auto* counter = reinterpret_cast<unsigned*>(p.workspace);
  auto* partials = reinterpret_cast<float*>(static_cast<unsigned char*>(p.workspace) + kBarrierBytes);
  unsigned epoch = 0;
  // Diagnostics: block 0's clock at each phase's end (persistent_decode.cuh, `timeline`).
  int mark_index = 0;
  const auto mark = [&]() {
    if (p.timeline != nullptr && blockIdx.x == 0 && threadIdx.x == 0) {
      std::uint64_t t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      p.timeline[mark_index] = t;
    }
    ++mark_index;
  };
  mark();
  // O and down: their input (another block's output), the projection, the residual add.
  const auto residual_projection = [&](const std::uint16_t* input, int n, const Gemv& g) {
    copy_into(input, n, x);
    consume(g, ring, x, rowout);
    mark();
    residual_epilogue(p, g, rowout);
    grid_barrier(counter, epoch);
    mark();
  };

  {  // the embedding: each block its slice of the residual
    const std::int64_t id = __ldg(p.ids);
    int i0, i1;
    block_units(p.hidden, i0, i1);
    for (int i = i0 + threadIdx.x; i < i1; i += kConsumerThreads) p.residual[i] = bf(p.embed[id * p.hidden + i]);
  }
  grid_barrier(counter, epoch);
  mark();
  for (int l = 0; l < p.layer_count; ++l) {
    const PersistentDecodeLayer& L = p.layers[l];
    norm_into(p.residual, L.input_norm, p.hidden, p.eps, x, reduce);
    mark();
    const Gemv qkv = layer_gemv(p, L, 0);
    consume(qkv, ring, x, rowout);
    mark();
    qkv_epilogue(p, L, qkv, rowout);
    grid_barrier(counter, epoch);
    mark();
    attention_partials<D>(p, L, lay.chunks, ring, scratch, partials);
    mark();
    grid_barrier(counter, epoch);
    mark();
    attention_merge(p, lay.chunks, partials);
    grid_barrier(counter, epoch);
    mark();
    residual_projection(p.attn_out, p.q_heads * p.head_dim, layer_gemv(p, L, 1));  // O
    norm_into(p.residual, L.post_norm, p.hidden, p.eps, x, reduce);
    const Gemv gate_up = layer_gemv(p, L, 2);
    consume(gate_up, ring, x, rowout);
    mark();
    swiglu_epilogue(p, gate_up, rowout);
    grid_barrier(counter, epoch);
    mark();
    residual_projection(p.act, p.ffn, layer_gemv(p, L, 3));  // down
  }
  norm_into(p.residual, p.final_norm, p.hidden, p.eps, x, reduce);
  const Gemv lm = lm_gemv(p);
  consume(lm, ring, x, rowout);
  logits_epilogue(p, lm, rowout);
  mark();
#else
  __trap();  // launch_persistent_decode refuses devices below sm_90
#endif
}

// ---- host side ----

struct Device {
  int sms = 0, major = 0, smem_optin = 0;
};

Device current_device() {
  Device d;
  int id = 0;
  SPECONTEXT_CUDA_CHECK(cudaGetDevice(&id));
  SPECONTEXT_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, id));
  SPECONTEXT_CUDA_CHECK(cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, id));
  SPECONTEXT_CUDA_CHECK(cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, id));
  return d;
}

int attention_chunks(int blocks, int q_heads, int kv_heads, int head_dim) {
  const int per_group = (q_heads / kv_heads + heads_per_item(head_dim) - 1) / heads_per_item(head_dim);
  return std::max(1, blocks / (kv_heads * per_group));
}

int round_up(int v, int to) { return (v + to - 1) / to * to; }

// The layout for p on device d; stages == 0 when it does not fit.
Layout layout_for(const PersistentDecodeParams& p, const Device& d) {
  Layout lay;
  const int q_dim = p.q_heads * p.head_dim, qkv_dim = q_dim + 2 * p.kv_heads * p.head_dim;
  const int max_k = std::max({p.hidden, q_dim, p.ffn});
  const auto per_block = [&](int units) { return (units + d.sms - 1) / d.sms; };
  const int max_rows = std::max({2 * per_block(qkv_dim / 2), per_block(p.hidden), 2 * per_block(p.ffn), per_block(p.vocab)});
  const int scratch = std::max(max_k * 2, kConsumerWarps * kHeadsPerItem * (p.head_dim + 2) * 4);
  lay.stage_bytes = round_up(std::max(max_k * 2, 4 * p.head_dim), 128);  // a row of W, or a K row and a V row
  const int fixed = round_up(scratch, 128) + round_up(max_rows * 4, 128) + 128 + kMaxStages * 16 + round_up(kMaxStages * (kConsumerWarps + 1) * 4, 128) + 128;
  lay.stages = std::min(kMaxStages, (d.smem_optin - fixed) / lay.stage_bytes);
  if (lay.stages < 2) {
    lay.stages = 0;
    return lay;
  }
  for (;; --lay.stages) {
    lay.barriers = lay.stages * lay.stage_bytes;
    lay.scratch = round_up(lay.barriers + lay.stages * 16, 128);
    lay.rowout = lay.scratch + round_up(scratch, 128);
    lay.reduce = lay.rowout + round_up(max_rows * 4, 128);
    lay.part = lay.reduce + 128;
    lay.bytes = lay.part + round_up(lay.stages * (kConsumerWarps + 1) * 4, 128);
    if (lay.bytes <= d.smem_optin) break;
    if (lay.stages == 2) {
      lay.stages = 0;
      return lay;
    }
  }
  lay.chunks = attention_chunks(d.sms, p.q_heads, p.kv_heads, p.head_dim);
  return lay;
}

[[noreturn]] void reject(const std::string& field, const std::string& why) {
  throw std::invalid_argument("launch_persistent_decode: field '" + field + "' " + why);
}

using Kernel = void (*)(PersistentDecodeParams, Layout);

Kernel kernel_for(int head_dim) {
  return head_dim == 32 ? persistent_decode_kernel<1> : head_dim == 64 ? persistent_decode_kernel<2> : head_dim == 128 ? persistent_decode_kernel<4> : persistent_decode_kernel<8>;
}

// Whether one block of `kernel` with `lay` fits on an SM (the cooperative launch needs all of them).
bool resident(Kernel kernel, const Layout& lay) {
  SPECONTEXT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, lay.bytes));
  int blocks = 0;
  SPECONTEXT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, static_cast<std::size_t>(lay.bytes)));
  return blocks >= 1;
}

bool aligned16(const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; }

// The shape rules (no CUDA call), then what the device must offer for that shape's layout (sets the
// kernel's shared-memory attribute on the way); each null when met, else why not.
const char* shape_unsupported(const PersistentDecodeParams& p) {
  if (p.q_heads <= 0 || p.kv_heads <= 0 || p.q_heads % p.kv_heads != 0) return "the query heads are not a multiple of the KV heads";
  if (p.head_dim % 32 != 0 || p.head_dim > 256 || (p.head_dim / 32 & (p.head_dim / 32 - 1)) != 0)
    return "head_dim is not 32, 64, 128 or 256";
  if (p.hidden <= 0 || p.hidden % 8 != 0 || p.ffn <= 0 || p.ffn % 8 != 0) return "hidden or ffn is not a positive multiple of 8";
  if (p.vocab <= 0) return "the vocabulary is empty";
  return nullptr;
}

const char* device_unsupported(const PersistentDecodeParams& p, const Device& d, const Layout& lay) {
  if (d.major < 9) return "the device is older than sm_90 (no bulk asynchronous copies)";
  if (lay.stages == 0) return "the weight ring does not fit in shared memory";
  if (!resident(kernel_for(p.head_dim), lay)) return "a block does not fit on an SM";
  return nullptr;
}

std::size_t workspace_bytes(int q_heads, int kv_heads, int head_dim, const Device& d) {
  return kBarrierBytes + static_cast<std::size_t>(q_heads) * attention_chunks(d.sms, q_heads, kv_heads, head_dim) * (head_dim + 2) * sizeof(float);
}

}  // namespace

const char* persistent_decode_unsupported(const PersistentDecodeParams& p) {
  if (const char* why = shape_unsupported(p)) return why;
  const Device d = current_device();
  return device_unsupported(p, d, layout_for(p, d));
}

std::size_t persistent_decode_workspace_bytes(int q_heads, int kv_heads, int head_dim) {
  if (q_heads <= 0 || kv_heads <= 0 || head_dim <= 0) return kBarrierBytes;
  return workspace_bytes(q_heads, kv_heads, head_dim, current_device());
}

void launch_persistent_decode(const PersistentDecodeParams& p, cudaStream_t stream) {
  if (p.layer_count <= 0) reject("layer_count", "= " + std::to_string(p.layer_count) + " is not positive");
  const std::pair<const void*, const char*> required[] = {
      {p.layers, "layers"}, {p.embed, "embed"},       {p.final_norm, "final_norm"}, {p.lm_head, "lm_head"},     {p.ids, "ids"},
      {p.slots, "slots"},   {p.positions, "positions"}, {p.lengths, "lengths"},     {p.inv_freq, "inv_freq"},   {p.residual, "residual"},
      {p.qkv, "qkv"},       {p.attn_out, "attn_out"}, {p.act, "act"},             {p.logits, "logits"},       {p.workspace, "workspace"}};
  for (const auto& [ptr, name] : required)
    if (ptr == nullptr) reject(name, "is null");
  if (!(p.scale > 0.0f)) reject("scale", "is not positive");
  for (const auto& [ptr, name] : {std::pair<const void*, const char*>{p.attn_out, "attn_out"}, {p.act, "act"}})
    if (!aligned16(ptr)) reject(name, "is not 16-byte aligned");
  if (const char* why = shape_unsupported(p)) reject("model/device", std::string("cannot run: ") + why);
  const Device d = current_device();
  const Layout lay = layout_for(p, d);
  if (const char* why = device_unsupported(p, d, lay)) reject("model/device", std::string("cannot run: ") + why);
  const std::size_t need = workspace_bytes(p.q_heads, p.kv_heads, p.head_dim, d);
  if (p.workspace_bytes < need) reject("workspace_bytes", "= " + std::to_string(p.workspace_bytes) + " is below the " + std::to_string(need) + " needed");
  const Kernel kernel = kernel_for(p.head_dim);  // its shared-memory attribute set by device_unsupported
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(p.workspace, 0, sizeof(unsigned), stream));
  // Cooperative: the grid barrier needs every block resident, which the launch then guarantees (or
  // fails) rather than hangs.
  cudaLaunchAttribute cooperative{};
  cooperative.id = cudaLaunchAttributeCooperative;
  cooperative.val.cooperative = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(d.sms));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = static_cast<std::size_t>(lay.bytes);
  config.stream = stream;
  config.attrs = &cooperative;
  config.numAttrs = 1;
  SPECONTEXT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, p, lay));
}

}  // namespace specontext::kernels
