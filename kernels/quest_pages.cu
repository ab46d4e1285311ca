#include <cuda_bf16.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/quest_pages.cuh"

namespace specontext::kernels {
namespace {

// Why this shape: one warp per page, its lanes across head_dim (so a key row is one coalesced read
// and a page's min/max sit in registers, head_dim / 32 values a lane), several pages per warp. The
// bound kernel only does real work right after a prefill (every page of the prompt once); in a
// decode step it updates one page per (request, KV head), so its grid stays small. The scoring
// kernel keeps the group's queries in shared memory as fp32 and reads each page's 2 * head_dim bf16
// bounds once for all of them.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBoundBlocksPerHead = 8;
constexpr int kPagesPerScoreBlock = 32;
constexpr int kMaxQueryFloats = 12 * 1024;  // group * head_dim in shared memory: 48 KiB
constexpr int kExpandThreads = 256;

__device__ __forceinline__ float bf16_to_float(std::uint16_t b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
__device__ __forceinline__ std::uint16_t float_to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ __forceinline__ int cached_length(const QuestPageScoresParams& p, int i) { return min(max(p.lengths[i], 0), p.max_context); }

template <int kDim>
__global__ void __launch_bounds__(kThreads) quest_bounds_kernel(QuestPageScoresParams p) {
  constexpr int kPer = kDim / 32;
  const int i = blockIdx.x, g = blockIdx.y, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t slot = p.slots[i];
  const int length = cached_length(p, i);
  const int pages = (length + kQuestPageSize - 1) / kQuestPageSize;
  const int first = min(p.summarised[slot], pages);
  const std::uint16_t* keys = p.k_cache + slot * p.kv_request_stride + g * p.kv_head_stride;
  std::uint16_t* bounds = p.bounds + slot * p.bounds_request_stride + g * p.bounds_head_stride;
  for (int page = first + static_cast<int>(blockIdx.z) * kWarps + warp; page < pages; page += static_cast<int>(gridDim.z) * kWarps) {
    float lo[kPer], hi[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) lo[j] = INFINITY, hi[j] = -INFINITY;
    const int end = min(length, (page + 1) * kQuestPageSize);
    for (int pos = page * kQuestPageSize; pos < end; ++pos) {
      const std::uint16_t* row = keys + static_cast<std::int64_t>(pos) * kDim;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const float k = bf16_to_float(row[lane + 32 * j]);
        lo[j] = fminf(lo[j], k);
        hi[j] = fmaxf(hi[j], k);
      }
    }
    std::uint16_t* out = bounds + static_cast<std::int64_t>(page) * 2 * kDim;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {  // the extremes of bf16 keys are bf16 values: exact
      out[lane + 32 * j] = float_to_bf16(lo[j]);
      out[kDim + lane + 32 * j] = float_to_bf16(hi[j]);
    }
  }
}

template <int kDim>
__global__ void __launch_bounds__(kThreads) quest_score_kernel(QuestPageScoresParams p, int group) {
  extern __shared__ float queries[];  // [group][kDim]
  constexpr int kPer = kDim / 32;
  const int i = blockIdx.x, g = blockIdx.y, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t slot = p.slots[i];
  const int length = cached_length(p, i);
  const int pages = (length + kQuestPageSize - 1) / kQuestPageSize;
  if (blockIdx.z == 0 && g == 0 && threadIdx.x == 0) {
    // Safe here: the bound kernel, the only reader of summarised, finished before this one began.
    p.page_counts[i] = pages;
    p.summarised[slot] = length / kQuestPageSize;
  }
  const int first_page = static_cast<int>(blockIdx.z) * kPagesPerScoreBlock;
  if (first_page >= pages) return;
  const std::uint16_t* q = p.q + static_cast<std::int64_t>(i) * p.q_row_stride + static_cast<std::int64_t>(g) * group * kDim;
  for (int e = threadIdx.x; e < group * kDim; e += kThreads) queries[e] = bf16_to_float(q[e]);
  __syncthreads();
  const std::uint16_t* bounds = p.bounds + slot * p.bounds_request_stride + g * p.bounds_head_stride;
  float* scores = p.scores + (static_cast<std::int64_t>(i) * p.kv_heads + g) * p.score_stride;
  const int last_page = min(pages, first_page + kPagesPerScoreBlock);
  for (int page = first_page + warp; page < last_page; page += kWarps) {
    const std::uint16_t* b = bounds + static_cast<std::int64_t>(page) * 2 * kDim;
    float lo[kPer], hi[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) lo[j] = bf16_to_float(b[lane + 32 * j]), hi[j] = bf16_to_float(b[kDim + lane + 32 * j]);
    float best = -INFINITY;
    for (int h = 0; h < group; ++h) {
      float s = 0;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const float qd = queries[h * kDim + lane + 32 * j];
        s += fmaxf(qd * lo[j], qd * hi[j]);
      }
#pragma unroll
      for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
      best = fmaxf(best, s);
    }
    if (lane == 0) scores[page] = best;
  }
}

__global__ void __launch_bounds__(kExpandThreads) quest_expand_kernel(QuestExpandParams p) {
  const int i = blockIdx.x, g = blockIdx.y;
  const int length = max(p.lengths[i], 0);
  const int n = min(max(p.page_counts[i * p.kv_heads + g], 0), p.max_pages);
  const std::int32_t* pages = p.pages + i * p.page_request_stride + g * p.page_head_stride;
  std::int32_t* out = p.positions + i * p.position_request_stride + g * p.position_head_stride;
  // Every chosen page but the last is complete (only the newest page can be partial, and the list is
  // ascending), so page j's positions go to entries j * 16 .. j * 16 + 15.
  for (int e = threadIdx.x; e < n * kQuestPageSize; e += kExpandThreads) {
    const int pos = pages[e / kQuestPageSize] * kQuestPageSize + e % kQuestPageSize;
    if (pos < length) out[e] = pos;
  }
  if (threadIdx.x == 0) {
    int count = 0, last_page = -1;
    if (n > 0) {
      last_page = pages[n - 1];
      count = (n - 1) * kQuestPageSize + max(0, min(kQuestPageSize, length - last_page * kQuestPageSize));
    }
    if (length > 0 && last_page != (length - 1) / kQuestPageSize) out[count++] = length - 1;  // the entering token
    p.position_counts[i * p.kv_heads + g] = count;
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("quest_pages: " + what);
}

template <int kDim>
void launch_scores_for(const QuestPageScoresParams& p, int max_pages, int group, cudaStream_t stream) {
  const unsigned bound_blocks = static_cast<unsigned>(std::min(kBoundBlocksPerHead, (max_pages + kWarps - 1) / kWarps));
  quest_bounds_kernel<kDim><<<dim3(static_cast<unsigned>(p.requests), static_cast<unsigned>(p.kv_heads), bound_blocks), kThreads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
  const unsigned score_blocks = static_cast<unsigned>((max_pages + kPagesPerScoreBlock - 1) / kPagesPerScoreBlock);
  const std::size_t smem = static_cast<std::size_t>(group) * kDim * sizeof(float);
  quest_score_kernel<kDim><<<dim3(static_cast<unsigned>(p.requests), static_cast<unsigned>(p.kv_heads), score_blocks), kThreads, smem, stream>>>(p, group);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_quest_page_scores(const QuestPageScoresParams& p, cudaStream_t stream) {
  require(p.requests >= 0 && p.requests <= std::numeric_limits<int>::max(), "requests out of range");
  if (p.requests == 0) return;
  require(p.q && p.k_cache && p.slots && p.lengths && p.bounds && p.summarised && p.scores && p.page_counts, "null pointer");
  require(p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128, "head_dim must be 32, 64 or 128, got " + std::to_string(p.head_dim));
  require(p.kv_heads >= 1 && p.kv_heads <= 65535 && p.q_heads >= p.kv_heads && p.q_heads % p.kv_heads == 0,
          "q_heads (" + std::to_string(p.q_heads) + ") must be a multiple of kv_heads (" + std::to_string(p.kv_heads) + ")");
  const int group = p.q_heads / p.kv_heads;
  require(group * p.head_dim <= kMaxQueryFloats, "a group of " + std::to_string(group) + " query heads does not fit in shared memory");
  require(p.max_context >= 1, "max_context must be positive");
  require(p.max_length >= 0, "max_length must not be negative");
  const int bound = p.max_length > 0 ? std::min(p.max_length, p.max_context) : p.max_context;
  const int max_pages = (bound + kQuestPageSize - 1) / kQuestPageSize;
  const std::int64_t all_pages = (static_cast<std::int64_t>(p.max_context) + kQuestPageSize - 1) / kQuestPageSize;
  require(p.q_row_stride >= static_cast<std::int64_t>(p.q_heads) * p.head_dim, "q_row_stride shorter than the query heads");
  require(p.kv_head_stride >= static_cast<std::int64_t>(p.max_context) * p.head_dim, "kv_head_stride shorter than max_context keys");
  require(p.kv_request_stride >= p.kv_heads * p.kv_head_stride, "kv_request_stride shorter than kv_heads heads");
  require(p.bounds_head_stride >= all_pages * 2 * p.head_dim, "bounds_head_stride shorter than 2 * head_dim per page of max_context");
  require(p.bounds_request_stride >= p.kv_heads * p.bounds_head_stride, "bounds_request_stride shorter than kv_heads heads");
  require(p.score_stride >= max_pages, "score_stride shorter than the pages of max_length");
  switch (p.head_dim) {
    case 32: launch_scores_for<32>(p, max_pages, group, stream); break;
    case 64: launch_scores_for<64>(p, max_pages, group, stream); break;
    default: launch_scores_for<128>(p, max_pages, group, stream); break;
  }
}

void launch_quest_expand_pages(const QuestExpandParams& p, cudaStream_t stream) {
  require(p.requests >= 0, "requests must not be negative");
  if (p.requests == 0) return;
  require(p.pages && p.page_counts && p.lengths && p.positions && p.position_counts, "null pointer");
  require(p.kv_heads >= 1 && p.kv_heads <= 65535, "kv_heads out of range");
  require(p.max_pages >= 0, "max_pages must not be negative");
  require(p.page_head_stride >= 0 && p.page_request_stride >= 0 && p.position_head_stride >= 0 && p.position_request_stride >= 0,
          "negative stride");
  const std::int64_t needed = static_cast<std::int64_t>(p.max_pages) * kQuestPageSize + 1;
  require(p.kv_heads == 1 || p.position_head_stride >= needed, "position_head_stride shorter than max_pages * 16 + 1");
  require(p.position_request_stride >= (p.kv_heads - 1) * p.position_head_stride + needed, "position_request_stride too short");
  quest_expand_kernel<<<dim3(static_cast<unsigned>(p.requests), static_cast<unsigned>(p.kv_heads)), kExpandThreads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
