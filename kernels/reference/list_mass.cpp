#include "kernels/reference/list_mass.hpp"

namespace specontext::ref {

std::vector<double> list_mass(const ListMassParams& p) {
  std::vector<double> out(static_cast<std::size_t>(p.requests) * p.kv_heads, 0.0);
  for (int i = 0; i < p.requests; ++i)
    for (int g = 0; g < p.kv_heads; ++g) {
      const std::int32_t* list = p.lists + i * p.list_request_stride + g * p.list_head_stride;
      const std::int32_t count = p.counts[i * p.count_request_stride + g * p.count_head_stride];
      const float* row = p.scores + (static_cast<std::int64_t>(i) * p.kv_heads + g) * p.score_stride;
      double& sum = out[static_cast<std::size_t>(i) * p.kv_heads + g];
      for (std::int32_t j = 0; j < count; ++j)
        if (list[j] >= 0 && list[j] < p.score_stride) sum += row[list[j]];
    }
  return out;
}

}  // namespace specontext::ref
