#pragma once
// The attention mass a list of positions captures (engine/attention_mass.hpp): per (request, KV
// head), the sum of that head's dense attention probabilities (attention_scores' rows, mean over the
// group's query heads) at the listed positions. Since the mean over the group is linear, this is the
// mean over the group's query heads of each head's captured mass. One warp per (request, KV head).
//
// Shapes (device pointers):
//   scores   fp32 [requests][kv_heads][score_stride] (attention_scores' out with one row per KV head)
//   lists    int32, list (i, g) at lists[i * list_request_stride + g * list_head_stride] (head stride
//            0: one list per request, batch-level), counts[i * count_request_stride + g *
//            count_head_stride] entries, each in [0, score_stride)
//   out      fp32 [requests][kv_heads]
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct ListMassParams {
  const float* scores = nullptr;
  std::int64_t score_stride = 0;
  const std::int32_t* lists = nullptr;
  std::int64_t list_request_stride = 0, list_head_stride = 0;
  const std::int32_t* counts = nullptr;
  std::int64_t count_request_stride = 0, count_head_stride = 0;
  int requests = 0, kv_heads = 0;
  float* out = nullptr;
};

// Checks the parameters (std::invalid_argument "list_mass: ...") and enqueues the kernel.
void launch_list_mass(const ListMassParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
