#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/list_mass.cuh"

namespace specontext::kernels {
namespace {

constexpr int kWarpsPerBlock = 4;

__global__ void __launch_bounds__(kWarpsPerBlock * 32) list_mass_kernel(ListMassParams p) {
  const int pair = static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (pair >= p.requests * p.kv_heads) return;
  const int i = pair / p.kv_heads, g = pair % p.kv_heads;
  const std::int32_t* list = p.lists + i * p.list_request_stride + g * p.list_head_stride;
  const int count = p.counts[i * p.count_request_stride + g * p.count_head_stride];
  const float* row = p.scores + static_cast<std::int64_t>(pair) * p.score_stride;
  float sum = 0;
  for (int j = lane; j < count; j += 32) {
    const std::int64_t pos = list[j];
    if (pos >= 0 && pos < p.score_stride) sum += row[pos];
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) p.out[pair] = sum;
}

}  // namespace

void launch_list_mass(const ListMassParams& p, cudaStream_t stream) {
  if (p.requests < 0 || p.kv_heads < 0) throw std::invalid_argument("list_mass: negative sizes");
  if (p.requests == 0 || p.kv_heads == 0) return;
  if (!p.scores || !p.lists || !p.counts || !p.out) throw std::invalid_argument("list_mass: null pointer");
  if (p.score_stride < 1) throw std::invalid_argument("list_mass: score_stride must be positive");
  const long long pairs = static_cast<long long>(p.requests) * p.kv_heads;
  if (pairs > 0x7fffffffLL) throw std::invalid_argument("list_mass: too many (request, KV head) pairs");
  const unsigned blocks = static_cast<unsigned>((pairs + kWarpsPerBlock - 1) / kWarpsPerBlock);
  list_mass_kernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
