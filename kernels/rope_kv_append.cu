#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/programmatic_launch.cuh"
#include "kernels/rope_kv_append.cuh"
#include "kernels/rope_math.cuh"

namespace specontext::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalf = 256;
// Blocks the launch aims for: a decode step's few tokens are spread over several blocks each (one
// block per token left the GPU with 1-32 blocks, ~10 us a layer at R = 1: a serial walk over 40 heads),
// while 1,024 tokens and more (a long prefill) keep one block each, so the cos/sin table is not
// recomputed per stripe.
constexpr std::int64_t kTargetBlocks = 1024;

// Grid (tokens, stripes). A token's work is (q_heads + kv_heads) rotated pairs per half head plus,
// with a V cache, kv_heads * half pairs of V copied as they are; stripe y takes items
// y*kThreads + threadIdx.x, stepping by gridDim.y * kThreads.
__global__ void __launch_bounds__(kThreads) rope_kv_append_kernel(RopeKvAppendParams p) {
  wait_for_previous_grid();    // launched programmatically: q, k, v and the positions come from the kernels before
  allow_next_grid_to_start();  // decode attention may place its blocks
  __shared__ float cos_s[kMaxHalf], sin_s[kMaxHalf];
  const std::int64_t t = blockIdx.x;
  const int half = static_cast<int>(p.head_dim / 2);
  const std::int32_t pos = p.positions[t];
  for (int i = threadIdx.x; i < half; i += kThreads) rope_cos_sin(pos, p.inv_freq[i], p.attention_factor, cos_s[i], sin_s[i]);
  __syncthreads();

  std::uint16_t* row = p.qkv + t * p.row_stride;
  const std::int64_t slot = p.slots[t];
  const std::int64_t cache_row = p.cache_row >= 0 ? p.cache_row : pos;
  const int rope_heads = static_cast<int>(p.q_heads + p.kv_heads);
  const int v_heads = p.v_cache != nullptr ? static_cast<int>(p.kv_heads) : 0;
  const int items = (rope_heads + v_heads) * half;
  for (int j = blockIdx.y * kThreads + threadIdx.x; j < items; j += gridDim.y * kThreads) {
    const int h = j / half, i = j % half;
    std::uint16_t* x = row + static_cast<std::int64_t>(h) * p.head_dim;
    if (h >= rope_heads) {  // V: copied to the cache unrotated
      std::uint16_t* v = p.v_cache + slot * p.cache_request_stride + (h - rope_heads) * p.cache_head_stride +
                         cache_row * p.head_dim;
      v[i] = x[i];
      v[i + half] = x[i + half];
      continue;
    }
    std::uint16_t y1 = x[i], y2 = x[i + half];
    rope_rotate(y1, y2, cos_s[i], sin_s[i]);
    x[i] = y1;
    x[i + half] = y2;
    if (h >= p.q_heads) {
      std::uint16_t* k = p.k_cache + slot * p.cache_request_stride + (h - p.q_heads) * p.cache_head_stride +
                         cache_row * p.head_dim;
      k[i] = y1;
      k[i + half] = y2;
    }
  }
}

}  // namespace

void check_rope_kv_append(const RopeKvAppendParams& p) {
  if (p.tokens < 0 || p.tokens > 0x7fffffff) throw std::invalid_argument("launch_rope_kv_append: tokens out of range: " + std::to_string(p.tokens));
  if (p.tokens == 0) return;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim / 2 > kMaxHalf)
    throw std::invalid_argument("launch_rope_kv_append: head_dim must be even and <= 512, got " + std::to_string(p.head_dim));
  if (p.q_heads < 0 || p.kv_heads <= 0) throw std::invalid_argument("launch_rope_kv_append: bad head counts");
  if (p.row_stride < qkv_row_heads(p) * p.head_dim) throw std::invalid_argument("launch_rope_kv_append: row_stride too small");
  if (p.cache_head_stride < p.head_dim || p.cache_request_stride < p.kv_heads * p.cache_head_stride)
    throw std::invalid_argument("launch_rope_kv_append: cache strides too small");
  if (p.qkv == nullptr || p.k_cache == nullptr || p.inv_freq == nullptr || p.positions == nullptr || p.slots == nullptr)
    throw std::invalid_argument("launch_rope_kv_append: null pointer");
  if (qkv_row_heads(p) * (p.head_dim / 2) > 0x7fffffff)
    throw std::invalid_argument("launch_rope_kv_append: too many heads: " + std::to_string(p.q_heads + p.kv_heads));
}

void launch_rope_kv_append(const RopeKvAppendParams& p, cudaStream_t stream) {
  check_rope_kv_append(p);
  if (p.tokens == 0) return;
  const std::int64_t items = qkv_row_heads(p) * (p.head_dim / 2);
  const std::int64_t stripes = std::max<std::int64_t>(1, std::min((items + kThreads - 1) / kThreads, (kTargetBlocks + p.tokens - 1) / p.tokens));
  const dim3 grid(static_cast<unsigned>(p.tokens), static_cast<unsigned>(stripes));
  SPECONTEXT_CUDA_CHECK(launch_programmatic(rope_kv_append_kernel, grid, dim3(kThreads), 0, stream, p));
}

}  // namespace specontext::kernels
