#pragma once
// CPU reference of kernels/list_mass: per (request, KV head), the sum of the scores at the listed
// positions, in double. Same layout and field meanings as the kernel (list_mass.cuh), host pointers.
#include <cstdint>
#include <vector>

namespace specontext::ref {

struct ListMassParams {
  const float* scores = nullptr;
  std::int64_t score_stride = 0;
  const std::int32_t* lists = nullptr;
  std::int64_t list_request_stride = 0, list_head_stride = 0;
  const std::int32_t* counts = nullptr;
  std::int64_t count_request_stride = 0, count_head_stride = 0;
  int requests = 0, kv_heads = 0;
};

// [requests * kv_heads]
std::vector<double> list_mass(const ListMassParams& p);

}  // namespace specontext::ref
