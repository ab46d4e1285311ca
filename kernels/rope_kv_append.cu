#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/rope_kv_append.cuh"

namespace specontext::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalf = 256;

__device__ __forceinline__ float bf(std::uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
__device__ __forceinline__ std::uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__global__ void __launch_bounds__(kThreads) rope_kv_append_kernel(RopeKvAppendParams p) {
  __shared__ float cos_s[kMaxHalf], sin_s[kMaxHalf];
  const std::int64_t t = blockIdx.x;
  const int half = static_cast<int>(p.head_dim / 2);
  const std::int32_t pos = p.positions[t];
  for (int i = threadIdx.x; i < half; i += kThreads) {
    // The accurate sincosf (no fast math): angles reach ~2.6e5 rad, which needs the full range
    // reduction. __fmul_rn keeps the product a single fp32 rounding, as torch's.
    const float angle = __fmul_rn(static_cast<float>(pos), p.inv_freq[i]);
    float s, c;
    sincosf(angle, &s, &c);
    cos_s[i] = c * p.attention_factor;
    sin_s[i] = s * p.attention_factor;
  }
  __syncthreads();

  std::uint16_t* row = p.qkv + t * p.row_stride;
  const std::int64_t slot = p.slots[t];
  const std::int64_t cache_row = p.cache_row >= 0 ? p.cache_row : pos;
  const std::int64_t rope_heads = p.q_heads + p.kv_heads;
  const std::int64_t pairs = rope_heads * half;
  for (std::int64_t j = threadIdx.x; j < pairs; j += kThreads) {
    const std::int64_t h = j / half;
    const int i = static_cast<int>(j % half);
    std::uint16_t* x = row + h * p.head_dim;
    const float x1 = bf(x[i]), x2 = bf(x[i + half]);
    const float c = cos_s[i], s = sin_s[i];
    const std::uint16_t y1 = to_bf(x1 * c - x2 * s), y2 = to_bf(x2 * c + x1 * s);
    x[i] = y1;
    x[i + half] = y2;
    if (h >= p.q_heads) {
      std::uint16_t* k = p.k_cache + slot * p.cache_request_stride + (h - p.q_heads) * p.cache_head_stride +
                         cache_row * p.head_dim;
      k[i] = y1;
      k[i + half] = y2;
    }
  }
  if (p.v_cache == nullptr) return;
  const std::uint16_t* v_row = row + rope_heads * p.head_dim;
  const std::int64_t v_elems = p.kv_heads * p.head_dim;
  for (std::int64_t j = threadIdx.x; j < v_elems; j += kThreads) {
    const std::int64_t h = j / p.head_dim, d = j % p.head_dim;
    p.v_cache[slot * p.cache_request_stride + h * p.cache_head_stride + cache_row * p.head_dim + d] = v_row[j];
  }
}

}  // namespace

void launch_rope_kv_append(const RopeKvAppendParams& p, cudaStream_t stream) {
  if (p.tokens < 0 || p.tokens > 0x7fffffff) throw std::invalid_argument("launch_rope_kv_append: tokens out of range: " + std::to_string(p.tokens));
  if (p.tokens == 0) return;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim / 2 > kMaxHalf)
    throw std::invalid_argument("launch_rope_kv_append: head_dim must be even and <= 512, got " + std::to_string(p.head_dim));
  if (p.q_heads < 0 || p.kv_heads <= 0) throw std::invalid_argument("launch_rope_kv_append: bad head counts");
  const std::int64_t v_heads = p.v_cache ? p.kv_heads : 0;
  if (p.row_stride < (p.q_heads + p.kv_heads + v_heads) * p.head_dim) throw std::invalid_argument("launch_rope_kv_append: row_stride too small");
  if (p.cache_head_stride < p.head_dim || p.cache_request_stride < p.kv_heads * p.cache_head_stride)
    throw std::invalid_argument("launch_rope_kv_append: cache strides too small");
  if (p.qkv == nullptr || p.k_cache == nullptr || p.inv_freq == nullptr || p.positions == nullptr || p.slots == nullptr)
    throw std::invalid_argument("launch_rope_kv_append: null pointer");
  rope_kv_append_kernel<<<static_cast<unsigned>(p.tokens), kThreads, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
