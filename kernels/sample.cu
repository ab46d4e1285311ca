#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/sample.cuh"
#include "kernels/sample_math.hpp"
#include "kernels/shared_memory_opt_in.cuh"

namespace specontext::kernels {
namespace {

namespace sm = sampling_math;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;  // radix digits of 8 bits (7 in the last pass)
constexpr unsigned kFull = 0xffffffffu;
constexpr unsigned kNoDigit = 0xffffffffu;

struct SampleShared {
  unsigned long long hist[kBins];  // the block's histogram, merged from the warps' ones
  unsigned long long scratch[kWarps];
  float warp_max[kWarps];
  int warp_arg[kWarps];
  unsigned int digit;
  unsigned long long above;  // weight of every token above the current radix prefix
  int found;
  unsigned long long found_base;
  unsigned long long draw;
};

// (value, index) that wins: the larger value, the smaller index among equals.
__device__ __forceinline__ void argmax_combine(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// The sum over the block, in every thread.
__device__ unsigned long long block_sum(unsigned long long v, SampleShared& s) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if ((threadIdx.x & 31) == 0) s.scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  unsigned long long total = 0;
  for (int w = 0; w < kWarps; ++w) total += s.scratch[w];
  __syncthreads();
  return total;
}

// The sum of v over the threads before this one (thread order).
__device__ unsigned long long block_exclusive_scan(unsigned long long v, SampleShared& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) s.scratch[warp] = incl;
  __syncthreads();
  unsigned long long before = 0;
  for (int w = 0; w < warp; ++w) before += s.scratch[w];
  __syncthreads();
  return before + incl - v;
}

// Adds w to the warp's own histogram at `digit` (kNoDigit: nothing). The lanes that share a
// digit sum their weights by shuffles and one of them stores: no atomics, no contention
// (64-bit shared atomics serialise badly when many tokens share an exponent).
__device__ __forceinline__ void warp_hist_add(unsigned long long* warp_hist, unsigned digit, unsigned long long w) {
  const int lane = threadIdx.x & 31;
  const unsigned peers = __match_any_sync(kFull, digit);
  // Each lane gathers its group's weights one shuffle per member: as many rounds as the largest
  // group has members (lanes without a digit take no part).
  unsigned rem = digit == kNoDigit ? 0u : peers;
  unsigned long long sum = 0;
  while (__any_sync(kFull, rem != 0)) {
    const int src = rem != 0 ? __ffs(rem) - 1 : lane;
    const unsigned long long v = __shfl_sync(kFull, w, src);
    if (rem != 0) {
      sum += v;
      rem &= rem - 1;
    }
  }
  if (digit != kNoDigit && lane == __ffs(peers) - 1) warp_hist[digit] += sum;
  __syncwarp();
}

// Over s.hist[0, bins), bins <= kThreads, from the top bin down: the bin at which `above` plus
// the weight of the bins so far reaches `target` goes to s.digit, the weight before it (above
// included) to s.above. The caller guarantees above + all bins >= target > above.
__device__ void select_digit(int bins, unsigned long long target, SampleShared& s) {
  const int bin = bins - 1 - static_cast<int>(threadIdx.x);
  const unsigned long long h = bin >= 0 ? s.hist[bin] : 0;
  const unsigned long long above = s.above;
  const unsigned long long before = above + block_exclusive_scan(h, s);  // syncs: s.above read first
  if (bin >= 0 && before < target && before + h >= target) {
    s.digit = static_cast<unsigned>(bin);
    s.above = before;
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleParams p) {
  __shared__ SampleShared s;
  extern __shared__ unsigned long long warp_hists[];  // [kWarps][kBins]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const std::int64_t row = blockIdx.x;
  const float* x = p.logits + row * p.row_stride;
  const int vocab = static_cast<int>(p.vocab);

  // The first index of the maximum (-inf rows: index 0).
  float best = -INFINITY;
  int arg = INT_MAX;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = x[i];
    if (v > best || arg == INT_MAX) {
      best = v;
      arg = i;
    }
  }
  for (int o = 16; o > 0; o >>= 1) argmax_combine(best, arg, __shfl_xor_sync(kFull, best, o), __shfl_xor_sync(kFull, arg, o));
  if (lane == 0) {
    s.warp_max[warp] = best;
    s.warp_arg[warp] = arg;
  }
  __syncthreads();
  best = s.warp_max[0];
  arg = s.warp_arg[0];
  for (int w = 1; w < kWarps; ++w) argmax_combine(best, arg, s.warp_max[w], s.warp_arg[w]);

  const float t = p.temperature;
  if (!(t > 0.0f) || !isfinite(best)) {
    if (tid == 0) p.out[row] = arg;
    return;
  }

  // τ's bit pattern; 0 keeps every token (probabilities are >= +0). Radix digits of the
  // probability's bits 30..23, 22..15, 14..7, 6..0 (bit 31, the sign, is 0).
  unsigned int tau_bits = 0;
  if (p.top_p < 1.0f) {
    unsigned long long* my_hist = warp_hists + warp * kBins;
    unsigned int prefix = 0;
    unsigned long long target = 0;
    if (tid == 0) s.above = 0;
    const int shifts[4] = {23, 15, 7, 0}, widths[4] = {8, 8, 8, 7};
    for (int pass = 0; pass < 4; ++pass) {
      const int shift = shifts[pass], width = widths[pass];
      for (int b = lane; b < kBins; b += 32) my_hist[b] = 0;
      __syncwarp();
      // Every lane of a warp runs the same iterations (the shuffles need them all).
      for (int base = 0; base < vocab; base += kThreads) {
        const int i = base + tid;
        unsigned digit = kNoDigit;
        unsigned long long w = 0;
        if (i < vocab) {
          const float pr = sm::token_prob(x[i], best, t);
          w = sm::token_weight(pr);
          const unsigned bits = sm::float_bits(pr);
          if (w != 0 && (bits >> (shift + width)) == prefix) digit = (bits >> shift) & ((1u << width) - 1u);
        }
        warp_hist_add(my_hist, digit, w);
      }
      __syncthreads();
      if (tid < kBins) {
        unsigned long long h = 0;
        for (int w = 0; w < kWarps; ++w) h += warp_hists[w * kBins + tid];
        s.hist[tid] = h;
      }
      __syncthreads();
      if (pass == 0) target = sm::top_p_target(p.top_p, block_sum(tid < kBins ? s.hist[tid] : 0, s));
      select_digit(1 << width, target, s);
      prefix = (prefix << width) | s.digit;
    }
    tau_bits = prefix;
  }

  // Level 1: kept weight per warp over 32 contiguous segments (multiples of 32 tokens) of the
  // row, coalesced.
  const int seg = ((vocab + kWarps - 1) / kWarps + 31) / 32 * 32;
  {
    const int start = warp * seg, end = min(start + seg, vocab);
    unsigned long long mine = 0;
    for (int i = start + lane; i < end; i += 32) {
      const float pr = sm::token_prob(x[i], best, t);
      if (sm::float_bits(pr) >= tau_bits) mine += sm::token_weight(pr);
    }
    for (int o = 16; o > 0; o >>= 1) mine += __shfl_xor_sync(kFull, mine, o);
    if (lane == 0) s.scratch[warp] = mine;
  }
  __syncthreads();
  if (tid == 0) {
    unsigned long long kept = 0;
    for (int w = 0; w < kWarps; ++w) kept += s.scratch[w];
    const unsigned long long r = sm::draw_point(p.uniforms[row], kept);
    unsigned long long before = 0;
    s.found = kWarps - 1;
    for (int w = 0; w < kWarps; ++w) {
      if (r < before + s.scratch[w]) {
        s.found = w;
        break;
      }
      before += s.scratch[w];
    }
    s.found_base = before;
    s.draw = r;
  }
  __syncthreads();

  // Level 2: the found segment split among all threads in contiguous chunks; the thread whose
  // chunk holds the draw point walks it in index order.
  const int seg_start = s.found * seg, seg_end = min(seg_start + seg, vocab);
  const unsigned long long r = s.draw, seg_base = s.found_base;
  const int chunk = (seg + kThreads - 1) / kThreads;
  const int c0 = min(seg_start + tid * chunk, seg_end), c1 = min(c0 + chunk, seg_end);
  unsigned long long mine = 0;
  for (int i = c0; i < c1; ++i) {
    const float pr = sm::token_prob(x[i], best, t);
    if (sm::float_bits(pr) >= tau_bits) mine += sm::token_weight(pr);
  }
  unsigned long long running = seg_base + block_exclusive_scan(mine, s);
  if (running <= r && r < running + mine) {
    for (int i = c0; i < c1; ++i) {
      const float pr = sm::token_prob(x[i], best, t);
      if (sm::float_bits(pr) >= tau_bits) running += sm::token_weight(pr);
      if (running > r) {
        p.out[row] = i;
        break;
      }
    }
  }
}

constexpr std::size_t kWarpHistBytes = sizeof(unsigned long long) * kWarps * kBins;  // 64 KiB

}  // namespace

void launch_sample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > INT_MAX) throw std::invalid_argument("launch_sample: rows out of range: " + std::to_string(p.rows));
  if (p.rows == 0) return;
  if (p.vocab <= 0 || p.vocab > INT_MAX) throw std::invalid_argument("launch_sample: vocab out of range: " + std::to_string(p.vocab));
  if (p.row_stride < p.vocab) throw std::invalid_argument("launch_sample: row_stride " + std::to_string(p.row_stride) + " < vocab");
  if (p.logits == nullptr || p.out == nullptr || (p.temperature > 0.0f && p.uniforms == nullptr))
    throw std::invalid_argument("launch_sample: null pointer");
  // Above the 48 KiB default.
  static SharedMemoryOptIn opt_in;
  opt_in.allow(reinterpret_cast<const void*>(sample_kernel), static_cast<int>(kWarpHistBytes), false);
  sample_kernel<<<static_cast<unsigned>(p.rows), kThreads, kWarpHistBytes, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
