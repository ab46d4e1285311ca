// Memory-bound skinny GEMM (decode, 1..16 tokens). Design, and why:
//
// * The arithmetic goes to the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate), with
//   the tokens as the n = 8 dimension. With CUDA-core FMAs, 8 tokens cost 8 FMAs plus the bf16
//   unpacking per weight, about 70-100 instructions per 16 bytes of W: at 4.5 TB/s over 132 SMs
//   that is close to the 128 thread-instructions per clock an SM issues, so the kernel would turn
//   issue-bound before it is memory-bound. One mma covers 16 rows x 16 k x 8 tokens, and the
//   instruction count no longer grows with the tokens (1..8 all run the same code). 9..16 tokens
//   take 2 n-tiles (a second instance of the template): each W fragment feeds both mmas, so W is
//   still read once, and X is read per block at up to W's bytes, from L1 or L2. Four n-tiles (up
//   to 32 tokens, with 16- or 32-row blocks) were slower than cuBLAS at 32 rows on an H100
//   (bench/README, "small_gemm above 8 rows"), so 17 rows and more stay with cuBLAS.
// * The fragments are loaded straight from global memory with 16-byte loads, no shared-memory
//   staging and no ldmatrix. A dot product does not care in which order k is summed, so the
//   mma's logical k can be any permutation of the physical k as long as W and X use the same
//   one. Lane (g = lane / 4, c = lane % 4) loads 8 consecutive bf16 of W rows g and g + 8 and of
//   X row (token) g at k = base + 8 c; words .x,.y of those vectors are its A/B registers for one
//   mma and .z,.w for a second. The 4 lanes of a group so read 64 contiguous bytes per row, every
//   32-byte sector fully used, and consecutive unrolled steps continue along the row.
// * W is read once per step: ld.global.nc.L1::no_allocate, so it does not evict X from L1, with
//   an L2 prefetch of 256 bytes (the rest of the row chunk the same warp asks for next).
//   kUnroll steps of loads (2 kUnroll x 16 bytes of W per thread) are issued before the first
//   mma uses them. With 256-thread blocks and several blocks per SM that is well over the
//   ~4-5 MB that HBM bandwidth x latency needs in flight.
// * X (<= 16 x in bf16, at most 459 KB for in = 14336) stays in L1/L2 through ordinary
//   (coherent) loads instead of being staged in shared memory: 8 x 14336 bf16 would not fit a
//   block's shared memory beside a useful occupancy, and only lanes with g < tokens load it,
//   so at 1 token X adds 1/8 of W's loads, all L1 hits after the first block on an SM.
// * A block owns 16 output rows (one mma row tile) and its 8 warps split k 8 ways, then add their
//   partial tiles through 4 KB of shared memory per n-tile. Splitting k inside the block keeps the grid at
//   out / 16 blocks (256 for the 4096-row O and down projections, 8016 for the LM head): enough
//   bytes in flight even for the smallest shapes, without cuBLAS's separate split-K reduce.
//   Rows past `out` read the last row again (valid memory, results dropped), so any `out` works.
// * Programmatic launch (kernels/programmatic_launch.cuh): W does not depend on the kernel before,
//   so each warp issues its first kUnroll steps of W loads, then waits for the previous grid, then
//   reads X. Those loads go to the registers the loop uses anyway. An earlier version (3e0dbc3)
//   issued prefetch.global.L2 for twice as many steps instead: that made every launch ~4 us slower,
//   programmatic or not (an H100's R = 1 step +0.5 ms over 129 launches; bench/README "The R = 1
//   regression"). Coherent rather than read-only loads of X cost nothing measurable there.
// * Fused epilogues (small_gemm.cuh): the mma puts rows g and g + 8 of a block in the same lane,
//   so a block's 16 rows are chosen as 8 pairs that the next kernel of the layer combines (gate j
//   with up j; dims i and i + head_dim / 2 of a head for RoPE): pair_row() below. Only the row
//   addresses change in the main loop; the epilogue rounds each result to bf16 first and then
//   applies the same device function as the separate kernel (swiglu_math.cuh, rope_math.cuh), so
//   the fused results equal the separate kernels' bit for bit.
#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/programmatic_launch.cuh"
#include "kernels/rope_math.cuh"
#include "kernels/small_gemm.cuh"
#include "kernels/swiglu_math.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "small_gemm needs bf16 mma.sync (sm_80 or newer)"
#endif

namespace specontext::kernels {
namespace {

constexpr int kWarps = 8;                // split k 8 ways inside a block
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerBlock = 16;        // the mma's m
constexpr int kTileTokens = 8;           // the mma's n: tokens per n-tile
constexpr int kMaxTokens = 16;           // 2 n-tiles
constexpr int kStepK = 32;               // physical k per step: 4 lanes x 8 bf16
constexpr int kUnroll = 4;               // steps whose loads are in flight together

// W: streamed once, skip L1; prefetch the next chunk of the row into L2.
// volatile keeps the loads inside their guards (no speculative out-of-bounds reads).
__device__ __forceinline__ uint4 load_weights(const std::uint16_t* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// X: tiny and read by every block, so let it live in L1. An ordinary (coherent) load, not the
// read-only path: under programmatic launch the previous kernel writes X while this grid is already
// running (before wait_for_previous_grid), which the read-only path does not allow.
__device__ __forceinline__ uint4 load_activations(const std::uint16_t* p) { return *reinterpret_cast<const uint4*>(p); }

// d += A (16 x 16, row) * B (16 x 8, col); a0/a2 row g, a1/a3 row g + 8; b0/b1 column (token) g.
__device__ __forceinline__ void mma_bf16(float (&d)[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2, std::uint32_t a3,
                                         std::uint32_t b0, std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Row g of block b's pair set (g < 8); its partner is that row + pair_half. Pairs come in groups
// of 2 pair_half rows (a head for RoPE, all of gate_up for SwiGLU), pair_half / 8 blocks a group:
// block b takes rows 8 (b % per_group) + g of group b / per_group's first half. pair_half 8 (Store)
// is rows 16 b .. 16 b + 15 in order.
__device__ __forceinline__ std::int64_t pair_row(std::int64_t b, int g, std::int64_t pair_half) {
  const std::int64_t per_group = pair_half / 8;
  return b / per_group * 2 * pair_half + b % per_group * 8 + g;
}

__device__ __forceinline__ std::uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// kNTiles n-tiles of 8 tokens (1 or 2: up to 8 or 16 tokens); each W fragment feeds kNTiles mmas,
// so W is still read once whatever the token count.
// One n-tile: 3 blocks per SM (<= 85 registers; 80 with nvcc 13.0): 24 warps x 4 KB of W in
// flight. Asking for 4 (64 registers) makes ptxas spill. Two n-tiles hold twice the accumulators
// and X fragments: 2 blocks per SM (<= 128 registers; 110), 16 warps x 4 KB of W in flight.
template <int kNTiles>
__global__ void __launch_bounds__(kThreads, kNTiles == 1 ? 3 : 2) small_gemm_kernel(SmallGemmParams p, std::int64_t pair_half) {
  __shared__ float4 partial[kWarps][kNTiles][32];
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2, c = lane & 3;
  const std::int64_t last_row = p.out - 1;
  const std::int64_t pair_lo = pair_row(blockIdx.x, g, pair_half);
  const std::int64_t row_lo = pair_lo < last_row ? pair_lo : last_row;
  const std::int64_t row_hi = pair_lo + pair_half < last_row ? pair_lo + pair_half : last_row;
  const std::uint16_t* w_lo = p.w + row_lo * p.in + c * 8;
  const std::uint16_t* w_hi = p.w + row_hi * p.in + c * 8;
  // n-tile n's B fragment: token g + 8 n (rows past the tokens read token 0, results dropped).
  bool has_token[kNTiles];
  const std::uint16_t* x_row[kNTiles];
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) {
    has_token[n] = g + kTileTokens * n < p.tokens;
    x_row[n] = p.x + (has_token[n] ? g + kTileTokens * n : 0) * p.x_stride + c * 8;
  }

  // Step counts fit 32 bits (in < 2^31 x 32); 32-bit counters and advancing pointers save the
  // registers 64-bit indices would take.
  const int steps = static_cast<int>((p.in + kStepK - 1) / kStepK);
  const int s_begin = static_cast<int>(static_cast<std::int64_t>(steps) * warp / kWarps);
  const int s_end = static_cast<int>(static_cast<std::int64_t>(steps) * (warp + 1) / kWarps);
  // Only the row's last step can be partial (in a multiple of 8, not of 32): there, lane c's
  // chunk exists iff 8 c < in - 32 (steps - 1).
  const int tail_steps = c * 8 < static_cast<int>(p.in - static_cast<std::int64_t>(steps - 1) * kStepK) ? steps : steps - 1;
  const int s_stop = s_end < tail_steps ? s_end : tail_steps;  // this lane loads steps [s_begin, s_stop)
  w_lo += static_cast<std::int64_t>(s_begin) * kStepK;
  w_hi += static_cast<std::int64_t>(s_begin) * kStepK;
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) x_row[n] += static_cast<std::int64_t>(s_begin) * kStepK;

  // W does not depend on the kernels before this one: with programmatic launch this grid starts
  // while the previous kernel finishes, so the first kUnroll steps of W are loaded before the wait
  // (into the registers the loop uses anyway), and X after it.
  uint4 wl[kUnroll], wh[kUnroll];
  auto load_w = [&](int s) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      wl[u] = wh[u] = make_uint4(0, 0, 0, 0);
      if (s + u < s_stop) {
        wl[u] = load_weights(w_lo + u * kStepK);
        wh[u] = load_weights(w_hi + u * kStepK);
      }
    }
    w_lo += kUnroll * kStepK;
    w_hi += kUnroll * kStepK;
  };
  load_w(s_begin);
  wait_for_previous_grid();
  // The layer's next kernel may place its blocks. After the fused gate_up (SwiGLU) that is the
  // down projection, the layer's largest read after gate_up itself: released here, its blocks went
  // onto the SMs of gate_up's partial last wave that free first and took ~30% longer (bench/README,
  // "Fused epilogues"), so there it is released once this block has left its loop.
  const bool release_after_loop = p.epilogue == SmallGemmEpilogue::SwiGlu;
  if (!release_after_loop) allow_next_grid_to_start();

  // Two accumulators per n-tile: the two mmas of a step do not wait on each other.
  float acc[2][kNTiles][4] = {};
  for (int s = s_begin; s < s_end; s += kUnroll) {
    if (s != s_begin) load_w(s);
    uint4 xv[kUnroll][kNTiles];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        xv[u][n] = make_uint4(0, 0, 0, 0);
        if (s + u < s_stop && has_token[n]) xv[u][n] = load_activations(x_row[n] + u * kStepK);
      }
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) x_row[n] += kUnroll * kStepK;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        mma_bf16(acc[0][n], wl[u].x, wh[u].x, wl[u].y, wh[u].y, xv[u][n].x, xv[u][n].y);
        mma_bf16(acc[1][n], wl[u].z, wh[u].z, wl[u].w, wh[u].w, xv[u][n].z, xv[u][n].w);
      }
  }
  if (release_after_loop) allow_next_grid_to_start();
#pragma unroll
  for (int n = 0; n < kNTiles; ++n)
    partial[warp][n][lane] = make_float4(acc[0][n][0] + acc[1][n][0], acc[0][n][1] + acc[1][n][1], acc[0][n][2] + acc[1][n][2],
                                         acc[0][n][3] + acc[1][n][3]);
  __syncthreads();

  // 128 results per n-tile (8 row pairs x 8 tokens), a pair per thread: sum the 8 warps' partials.
  // Accumulator element j of lane l is row g (j < 2) or its partner (j >= 2), token 2 c + (j & 1)
  // of the n-tile.
  constexpr int kPairsPerTile = kRowsPerBlock / 2 * kTileTokens;
  for (int q = static_cast<int>(threadIdx.x); q < kNTiles * kPairsPerTile; q += kThreads) {
    const int n = q / kPairsPerTile, l = (q >> 1) & 31, e = q & 1;
    const float* flat = reinterpret_cast<const float*>(partial) + n * 128;
    float lo = 0.f, hi = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      lo += flat[w * kNTiles * 128 + 4 * l + e];
      hi += flat[w * kNTiles * 128 + 4 * l + 2 + e];
    }
    const std::int64_t token = kTileTokens * n + 2 * (l & 3) + e;
    if (token >= p.tokens) continue;
    const std::int64_t r_lo = pair_row(blockIdx.x, l >> 2, pair_half), r_hi = r_lo + pair_half;
    switch (p.epilogue) {
      case SmallGemmEpilogue::Store:
        if (p.y_f32 != nullptr) {
          if (r_lo < p.out) p.y_f32[token * p.y_stride + r_lo] = lo;
          if (r_hi < p.out) p.y_f32[token * p.y_stride + r_hi] = hi;
        } else {
          if (r_lo < p.out) p.y_bf16[token * p.y_stride + r_lo] = to_bf16(lo);
          if (r_hi < p.out) p.y_bf16[token * p.y_stride + r_hi] = to_bf16(hi);
        }
        break;
      case SmallGemmEpilogue::SwiGlu:  // r_lo = gate j = activation column j
        p.y_bf16[token * p.y_stride + r_lo] = swiglu_bf16(to_bf16(lo), to_bf16(hi));
        break;
      case SmallGemmEpilogue::RopeKvAppend: {
        const RopeKvAppendParams& r = p.rope;
        const std::int64_t h = r_lo / r.head_dim, i = r_lo % r.head_dim;  // i < head_dim / 2
        const std::int64_t rope_heads = r.q_heads + r.kv_heads;
        const std::int32_t pos = r.positions[token];
        std::uint16_t y1 = to_bf16(lo), y2 = to_bf16(hi);
        if (h < rope_heads) {
          float cs, sn;
          rope_cos_sin(pos, r.inv_freq[i], r.attention_factor, cs, sn);
          rope_rotate(y1, y2, cs, sn);
        }
        p.y_bf16[token * p.y_stride + r_lo] = y1;
        p.y_bf16[token * p.y_stride + r_hi] = y2;
        if (h >= r.q_heads) {  // K (rotated) or V: the cache row too
          const bool is_k = h < rope_heads;
          std::uint16_t* dst = (is_k ? r.k_cache : r.v_cache) + r.slots[token] * r.cache_request_stride +
                               (is_k ? h - r.q_heads : h - rope_heads) * r.cache_head_stride +
                               (r.cache_row >= 0 ? r.cache_row : pos) * r.head_dim;
          dst[i] = y1;
          dst[i + r.head_dim / 2] = y2;
        }
        break;
      }
    }
  }
}

[[noreturn]] void reject(const std::string& field, const std::string& why) {
  throw std::invalid_argument("launch_small_gemm: field '" + field + "' " + why);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

void launch_small_gemm(const SmallGemmParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.tokens > kMaxTokens) reject("tokens", "= " + std::to_string(p.tokens) + " is outside [0, " + std::to_string(kMaxTokens) + "]");
  if (p.out < 0) reject("out", "= " + std::to_string(p.out) + " is negative");
  if (p.in <= 0 || p.in % 8 != 0) reject("in", "= " + std::to_string(p.in) + " is not a positive multiple of 8");
  if (p.tokens == 0 || p.out == 0) return;
  if (p.x_stride < p.in || p.x_stride % 8 != 0)
    reject("x_stride", "= " + std::to_string(p.x_stride) + " must be >= in (" + std::to_string(p.in) + ") and a multiple of 8");
  const bool swiglu = p.epilogue == SmallGemmEpilogue::SwiGlu, rope = p.epilogue == SmallGemmEpilogue::RopeKvAppend;
  if (!swiglu && !rope && p.epilogue != SmallGemmEpilogue::Store) reject("epilogue", "is not a SmallGemmEpilogue");
  const std::int64_t y_cols = swiglu ? p.out / 2 : p.out;
  if (p.y_stride < y_cols) reject("y_stride", "= " + std::to_string(p.y_stride) + " is less than the " + std::to_string(y_cols) + " columns written");
  if (p.x == nullptr) reject("x", "is null");
  if (p.w == nullptr) reject("w", "is null");
  if ((p.y_bf16 == nullptr) == (p.y_f32 == nullptr)) reject("y_bf16/y_f32", "must have exactly one set");
  if (!aligned16(p.x)) reject("x", "is not 16-byte aligned");
  if (!aligned16(p.w)) reject("w", "is not 16-byte aligned");
  std::int64_t pair_half = kRowsPerBlock / 2;
  if (swiglu) {
    if (p.out % 16 != 0) reject("out", "= " + std::to_string(p.out) + " must be 2 ffn with ffn a multiple of 8 (SwiGlu)");
    if (p.y_bf16 == nullptr) reject("y_bf16", "is null (SwiGlu writes bf16)");
    pair_half = p.out / 2;
  }
  if (rope) {
    const RopeKvAppendParams& r = p.rope;
    check_rope_kv_append(r);
    if (p.y_bf16 == nullptr || r.qkv != p.y_bf16) reject("rope.qkv", "must be y_bf16 (RopeKvAppend rotates Y in place)");
    if (r.row_stride != p.y_stride) reject("rope.row_stride", "= " + std::to_string(r.row_stride) + " must equal y_stride");
    if (r.tokens != p.tokens) reject("rope.tokens", "= " + std::to_string(r.tokens) + " must equal tokens");
    if (r.head_dim % 16 != 0) reject("rope.head_dim", "= " + std::to_string(r.head_dim) + " is not a multiple of 16");
    const std::int64_t heads = qkv_row_heads(r);
    if (p.out != heads * r.head_dim)
      reject("out", "= " + std::to_string(p.out) + " is not the " + std::to_string(heads) + " heads x " + std::to_string(r.head_dim) +
                        " of rope (RopeKvAppend)");
    pair_half = r.head_dim / 2;
  }
  const std::int64_t blocks = (p.out + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > 0x7fffffff) reject("out", "= " + std::to_string(p.out) + " is too large for one grid");
  // Launched programmatically (kernels/programmatic_launch.cuh): the first weight loads overlap
  // the previous kernel's tail.
  const dim3 grid(static_cast<unsigned>(blocks));
  if (p.tokens <= kTileTokens) SPECONTEXT_CUDA_CHECK(launch_programmatic(small_gemm_kernel<1>, grid, dim3(kThreads), 0, stream, p, pair_half));
  else SPECONTEXT_CUDA_CHECK(launch_programmatic(small_gemm_kernel<2>, grid, dim3(kThreads), 0, stream, p, pair_half));
}

}  // namespace specontext::kernels
