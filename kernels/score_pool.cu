#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/score_pool.cuh"

namespace specontext::kernels {
namespace {

// One block per (row, tile of kTile positions): the tile and its radius on each side are staged in
// shared memory once, so each score is read from global memory about once however wide the window.
// The windows never include position 0 and stop at n - 1, as in the reference; the mean adds in
// ascending position order in float and divides once, so it matches the reference bit for bit.
constexpr int kTile = 256;

__global__ void __launch_bounds__(kTile) score_pool_kernel(ScorePoolParams p, int radius, int mean) {
  __shared__ float tile[kTile + 2 * ScorePooling::kMaxRadius];
  const int row = blockIdx.y;
  const long long len = p.lengths[row / p.rows_per_request];
  const long long n = len < 0 ? 0 : (len > p.max_positions ? p.max_positions : len);
  const long long start = static_cast<long long>(blockIdx.x) * kTile;
  if (start >= n) return;  // the whole block leaves together: no barrier is skipped by part of it
  const float* in = p.in + row * p.score_stride;
  float* out = p.out + row * p.score_stride;
  for (int i = threadIdx.x; i < kTile + 2 * radius; i += kTile) {
    const long long q = start - radius + i;
    tile[i] = (q >= 1 && q < n) ? in[q] : 0.0f;  // outside [1, n) is never read below
  }
  __syncthreads();
  const long long pos = start + threadIdx.x;
  if (pos >= n) return;
  float v;
  if (pos == 0) {
    v = in[0];
  } else {
    const long long lo = pos - radius < 1 ? 1 : pos - radius, hi = pos + radius > n - 1 ? n - 1 : pos + radius;
    v = tile[lo - start + radius];
    for (long long q = lo + 1; q <= hi; ++q) v = mean ? v + tile[q - start + radius] : fmaxf(v, tile[q - start + radius]);
    if (mean) v /= static_cast<float>(hi - lo + 1);
  }
  const long long first_recent = n - p.pooling.recent < 1 ? 1 : n - p.pooling.recent;
  if (pos >= first_recent) v = __int_as_float(0x7f800000);  // +inf
  out[pos] = v;
}

}  // namespace

void launch_score_pool(const ScorePoolParams& p, cudaStream_t stream) {
  const ScorePooling& s = p.pooling;
  if (p.rows < 0 || p.rows > 65535) throw std::invalid_argument("score_pool: rows must be in 0..65535, got " + std::to_string(p.rows));
  if (p.rows == 0) return;
  if (!p.in || !p.out || !p.lengths) throw std::invalid_argument("score_pool: null pointer");
  if (p.in == p.out) throw std::invalid_argument("score_pool: in and out must be different buffers");
  if (p.rows_per_request < 1 || p.rows % p.rows_per_request != 0)
    throw std::invalid_argument("score_pool: rows must be a multiple of rows_per_request >= 1");
  if (p.max_positions < 1 || p.score_stride < p.max_positions)
    throw std::invalid_argument("score_pool: need 1 <= max_positions <= score_stride");
  if (!s.valid())
    throw std::invalid_argument("score_pool: radius must be in 0.." + std::to_string(ScorePooling::kMaxRadius) + " and recent >= 0");
  const int radius = s.kind == ScorePoolKind::None ? 0 : s.radius;
  const dim3 grid(static_cast<unsigned>((p.max_positions + kTile - 1) / kTile), static_cast<unsigned>(p.rows));
  score_pool_kernel<<<grid, kTile, 0, stream>>>(p, radius, s.kind == ScorePoolKind::Mean ? 1 : 0);
  SPECONTEXT_CUDA_CHECK_LAUNCH();
}

}  // namespace specontext::kernels
