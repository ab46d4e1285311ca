#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/shared_memory_opt_in.cuh"
#include "kernels/top_b_select.cuh"

namespace specontext::kernels {
namespace {

// Why this shape (H200: 132 SMs, 228 KB shared memory per SM; rows up to 256, rows of up to
// 256K positions, B up to 8192, inside a CUDA graph):
// - One block per row, so no cross-block merge, workspace or second kernel; 1024 threads and
//   two blocks per SM put 256 rows in a single wave. The cost is HBM reads of the score row:
//   every pass over it is one read, so the design minimises passes over global memory.
// - Radix select on key(x), a uint32 whose unsigned order is the score order (NaN lowest, -0.0
//   folded onto +0.0): digits of 11, 11 and 10 bits, each a 2048-bin histogram in shared memory,
//   then a scan from the top digit down picks the digit where the running count reaches B.
//   After any pass, if the remaining quota equals the whole bin, every key with that prefix is
//   taken and finer digits cannot change the set: the select stops early.
// - Rows of at most kCacheKeys positions keep their keys in shared memory (position-indexed)
//   after the first read, so they read global memory once. Longer rows: pass 1 reads global;
//   pass 2 reads global and, when pass 1's bin fits, also copies that bin's keys to shared
//   memory, so pass 3 needs no global read; the compaction reads global once more (3 reads).
// - Histogram adds are shared atomics, one per warp when the whole warp has the same digit
//   (long runs of equal scores, masked positions, keys outside the current prefix), so ties do
//   not serialise 32 lanes on one bin.
// - The compaction walks the row in steps of kThreads * kPer positions in position order:
//   ballots give each warp its count of "above" and "tie" positions per 1024-position slice,
//   one warp scans the 8 x 32 counts, and each selected position's output slot is (above
//   before it) + min(ties before it, quota) — an ascending list with no sort. Two barriers per
//   8192 positions (double-buffered counts); it stops once B positions are written.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kPer = 8;          // positions per thread per step: loads in flight per thread
constexpr int kStep = kThreads * kPer;
constexpr int kBins = 2048;      // 11-bit digits (the last pass uses the low 1024)
constexpr int kCacheKeys = 24576;  // 96 KB of keys; two blocks (~107 KB each) fit an SM
constexpr int kMaxPositions = 1 << 30;
constexpr unsigned kFull = 0xffffffffu;
constexpr unsigned kNoDigit = 0xffffffffu;
static_assert(kBins == 2 * kThreads, "select_digit gives each thread two bins");
static_assert(kWarps == 32, "the compaction scan gives each lane of warp 0 kPer of the kPer * kWarps counts");
static_assert(kStep < (1 << 16), "one step's counts are packed as two 16-bit fields");

struct Shared {
  unsigned hist[kBins];
  unsigned scan[kWarps];
  unsigned cnt[2][kPer * kWarps];  // compaction: per (slice, warp) (above << 16 | ties), then their prefix
  unsigned total[2];
  unsigned digit, above, bin;  // select_digit's result
  unsigned cache_n;            // keys copied to the cache in pass 2 (long rows)
  int last_taken;              // position n - 1 was selected
};

// Order-preserving image of a score: unsigned comparison of keys is float comparison of the
// scores, with NaN (key 0, which no number maps to) below -inf and -0.0 equal to +0.0, as `==`
// makes them equal in the CPU selection. Tested on the bits, not with float compares, so that
// flush-to-zero compilation (--use_fast_math) cannot merge subnormals with zero.
__device__ __forceinline__ unsigned score_key(float x) {
  unsigned b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0u;  // NaN
  if ((b & 0x7fffffffu) == 0u) b = 0u;            // -0.0 -> +0.0
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Adds one to hist[digit] for every lane (kNoDigit: nothing); every lane of the warp must call it.
__device__ __forceinline__ void hist_add(unsigned* hist, unsigned digit) {
  const unsigned first = __shfl_sync(kFull, digit, 0);
  if (__all_sync(kFull, digit == first)) {
    if ((threadIdx.x & 31) == 0 && first != kNoDigit) atomicAdd(hist + first, 32u);
  } else if (digit != kNoDigit) {
    atomicAdd(hist + digit, 1u);
  }
}

// The sum of v over the threads before this one (thread order); two barriers.
__device__ unsigned block_exclusive_scan(unsigned v, Shared& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) s.scan[warp] = incl;
  __syncthreads();
  unsigned before = 0;
  for (int w = 0; w < warp; ++w) before += s.scan[w];
  __syncthreads();
  return before + incl - v;
}

// Over s.hist from the top bin down, starting from `above` keys already known to be higher:
// the bin at which the running count reaches k goes to s.digit, the count before it to s.above,
// its size to s.bin. The caller guarantees above < k <= above + sum(hist).
__device__ void select_digit(unsigned above, unsigned k, Shared& s) {
  const int hi = kBins - 1 - 2 * static_cast<int>(threadIdx.x);  // this thread's bins: hi, hi - 1
  const unsigned h0 = s.hist[hi], h1 = s.hist[hi - 1];
  const unsigned before = above + block_exclusive_scan(h0 + h1, s);
  if (before < k && before + h0 >= k) {
    s.digit = static_cast<unsigned>(hi);
    s.above = before;
    s.bin = h0;
  } else if (before + h0 < k && before + h0 + h1 >= k) {
    s.digit = static_cast<unsigned>(hi - 1);
    s.above = before + h0;
    s.bin = h1;
  }
  __syncthreads();
}

// Calls f(i, key, valid) for positions i = base + j * kThreads + tid of every step, loading the
// step's kPer scores before using any (loads in flight); all lanes call f the same number of
// times (f may use warp collectives).
template <class F>
__device__ __forceinline__ void for_each_global(const float* row, int n, F&& f) {
  for (int base = 0; base < n; base += kStep) {
    float v[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      v[j] = i < n ? __ldg(row + i) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      f(i, score_key(v[j]), i < n);
    }
  }
}

// The same over count keys in shared memory.
template <class F>
__device__ __forceinline__ void for_each_cached(const unsigned* cache, int count, F&& f) {
  for (int base = 0; base < count; base += kThreads) {
    const int i = base + static_cast<int>(threadIdx.x);
    f(i, i < count ? cache[i] : 0u, i < count);
  }
}

__device__ __forceinline__ int valid_count(const TopBSelectParams& p, int r) {
  const long long n = static_cast<long long>(p.lengths[r / p.rows_per_request]) + p.length_offset;
  return n < 0 ? 0 : (n > p.max_positions ? p.max_positions : static_cast<int>(n));
}

// Grid: one block per row; dynamic shared memory cache_keys * 4 bytes, cache_keys =
// min(max_positions, kCacheKeys).
__global__ void __launch_bounds__(kThreads, 2) top_b_select_kernel(TopBSelectParams p, int cache_keys) {
  __shared__ Shared s;
  extern __shared__ unsigned cache[];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int r = static_cast<int>(blockIdx.x);
  const int n = valid_count(p, r);
  std::int32_t* out = p.indices + static_cast<std::int64_t>(r) * p.index_stride;

  if (n <= p.budget) {  // every position; n - 1 is among them, so ensure_last adds nothing
    for (int i = tid; i < n; i += kThreads) out[i] = i;
    if (tid == 0) p.counts[r] = n;
    return;
  }

  const float* row = p.scores + static_cast<std::int64_t>(r) * p.score_stride;
  const bool in_smem = n <= cache_keys;  // cache[i] = key of position i after the first pass
  const unsigned k = static_cast<unsigned>(p.budget);  // rank of the threshold key, < n
  if (tid == 0) {
    s.cache_n = 0;
    s.last_taken = 0;
  }

  // Radix select. After each pass, every key whose top (32 - shift) bits exceed `prefix` is
  // selected (`above` of them), and k - above of the `bin` keys whose top bits equal it are.
  unsigned prefix = 0, above = 0, bin = 0;
  int shift = 32;
  bool cached_bin = false;  // long rows: the first pass's bin goes to cache[0 .. s.cache_n)
  for (int pass = 0; pass < 3; ++pass) {
    const int width = pass == 2 ? 10 : 11;
    shift -= width;
    const int high = shift + width;  // bits above this pass's digit, compared with prefix
    for (int b = tid; b < kBins; b += kThreads) s.hist[b] = 0;
    __syncthreads();  // also orders the previous pass's cache writes and s.* reads
    auto add = [&](int, unsigned key, bool valid) {
      const bool match = valid && (pass == 0 || (key >> high) == prefix);
      hist_add(s.hist, match ? (key >> shift) & ((1u << width) - 1u) : kNoDigit);
    };
    if (pass == 0) {
      for_each_global(row, n, [&](int i, unsigned key, bool valid) {
        if (in_smem && valid) cache[i] = key;
        add(i, key, valid);
      });
    } else if (in_smem) {
      for_each_cached(cache, n, add);
    } else if (pass == 1) {
      for_each_global(row, n, [&](int i, unsigned key, bool valid) {
        add(i, key, valid);
        if (cached_bin) {  // copy the first pass's bin (this pass's matches), in any order
          const bool match = valid && (key >> high) == prefix;
          const unsigned m = __ballot_sync(kFull, match);
          if (m != 0) {
            const int leader = __ffs(m) - 1;
            unsigned at = 0;
            if (lane == leader) at = atomicAdd(&s.cache_n, static_cast<unsigned>(__popc(m)));
            at = __shfl_sync(kFull, at, leader);
            if (match) cache[at + __popc(m & ((1u << lane) - 1u))] = key;
          }
        }
      });
    } else if (cached_bin) {
      for_each_cached(cache, static_cast<int>(s.cache_n), add);
    } else {
      for_each_global(row, n, add);
    }
    __syncthreads();
    select_digit(above, k, s);
    prefix = (prefix << width) | s.digit;
    above = s.above;
    bin = s.bin;
    if (pass == 0) cached_bin = !in_smem && bin <= static_cast<unsigned>(cache_keys);
    if (k - above == bin) break;  // the whole bin is taken: finer digits change nothing
  }
  const unsigned quota = k - above;

  // Ordered compaction: position i is selected when key >> shift is above prefix, or equal to it
  // and fewer than quota equal ones precede it; its slot is the number of selected before it.
  unsigned run_above = 0, run_ties = 0;
  const unsigned lt = (1u << lane) - 1u;
  for (int base = 0, step = 0; base < n; base += kStep, ++step) {
    if (run_above + min(run_ties, quota) >= k) break;  // all B written (uniform: shared totals)
    unsigned key[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = base + j * kThreads + tid;
      key[j] = i < n ? (in_smem ? cache[i] : score_key(__ldg(row + i))) : 0u;
    }
    unsigned above_bits = 0, tie_bits = 0;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = base + j * kThreads + tid;
      const unsigned c = key[j] >> shift;
      if (i < n && c > prefix) above_bits |= 1u << j;
      if (i < n && c == prefix) tie_bits |= 1u << j;
    }
    const int buf = step & 1;  // double-buffered: the next step's writes cannot meet this step's reads
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const unsigned a = __ballot_sync(kFull, (above_bits >> j) & 1u), t = __ballot_sync(kFull, (tie_bits >> j) & 1u);
      if (lane == 0) s.cnt[buf][j * kWarps + warp] = (static_cast<unsigned>(__popc(a)) << 16) | static_cast<unsigned>(__popc(t));
    }
    __syncthreads();
    if (warp == 0) {  // exclusive prefix over the (slice, warp) counts, in position order
      unsigned v[kPer], sum = 0;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        v[e] = s.cnt[buf][lane * kPer + e];
        sum += v[e];
      }
      unsigned incl = sum;
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned x = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += x;
      }
      unsigned before = incl - sum;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        s.cnt[buf][lane * kPer + e] = before;
        before += v[e];
      }
      if (lane == 31) s.total[buf] = incl;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const bool is_above = (above_bits >> j) & 1u, is_tie = (tie_bits >> j) & 1u;
      const unsigned a = __ballot_sync(kFull, is_above), t = __ballot_sync(kFull, is_tie);
      const unsigned pre = s.cnt[buf][j * kWarps + warp];
      const unsigned above_before = run_above + (pre >> 16) + static_cast<unsigned>(__popc(a & lt));
      const unsigned ties_before = run_ties + (pre & 0xffffu) + static_cast<unsigned>(__popc(t & lt));
      if (is_above || (is_tie && ties_before < quota)) {
        const int i = base + j * kThreads + tid;
        out[above_before + min(ties_before, quota)] = i;
        if (i == n - 1) s.last_taken = 1;
      }
    }
    const unsigned total = s.total[buf];
    run_above += total >> 16;
    run_ties += total & 0xffffu;
  }
  __syncthreads();  // s.last_taken
  if (tid == 0) {
    const bool append = p.ensure_last && s.last_taken == 0;
    if (append) out[k] = n - 1;
    p.counts[r] = static_cast<std::int32_t>(k) + (append ? 1 : 0);
  }
}

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("top_b_select: " + what); }

}  // namespace

void launch_top_b_select(const TopBSelectParams& p, cudaStream_t stream) {
  if (p.rows < 0) fail("rows " + std::to_string(p.rows) + " < 0");
  if (p.rows_per_request < 1) fail("rows_per_request " + std::to_string(p.rows_per_request) + " < 1");
  if (p.rows % p.rows_per_request != 0)
    fail("rows " + std::to_string(p.rows) + " is not a multiple of rows_per_request " + std::to_string(p.rows_per_request));
  if (p.budget < 1) fail("budget " + std::to_string(p.budget) + " < 1");
  if (p.max_positions < 0 || p.max_positions > kMaxPositions)
    fail("max_positions " + std::to_string(p.max_positions) + " outside [0, 2^30]");
  if (p.score_stride < p.max_positions)
    fail("score_stride " + std::to_string(p.score_stride) + " < max_positions " + std::to_string(p.max_positions));
  const std::int64_t need = static_cast<std::int64_t>(p.budget) + (p.ensure_last ? 1 : 0);
  if (p.index_stride < need)
    fail("index_stride " + std::to_string(p.index_stride) + " < budget" + (p.ensure_last ? " + 1 (ensure_last) = " : " = ") +
         std::to_string(need));
  if (p.rows == 0) return;  // an empty batch may pass null buffers
  if (p.scores == nullptr || p.lengths == nullptr || p.indices == nullptr || p.counts == nullptr) fail("null pointer");

  // The key cache is sized by the host-known bound, so short contexts use little shared memory.
  const int cache_keys = std::min(p.max_positions, kCacheKeys);
  const std::size_t smem = static_cast<std::size_t>(cache_keys) * sizeof(unsigned);
  // Above the 48 KB default. Two blocks of ~107 KB per SM need the largest shared-memory carveout.
  static SharedMemoryOptIn opt_in;
  opt_in.allow(reinterpret_cast<const void*>(top_b_select_kernel), static_cast<int>(kCacheKeys * sizeof(unsigned)), true);
  top_b_select_kernel<<<static_cast<unsigned>(p.rows), kThreads, smem, stream>>>(p, cache_keys);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
