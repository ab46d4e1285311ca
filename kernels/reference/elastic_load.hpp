#pragma once
// CPU references of kernels/elastic_plan and kernels/elastic_gather (elastic loading: the
// in-place slot update plan, the host -> slot gather and the current token's store back to the
// host). Plain loops over host arrays, same layouts and field meanings as the kernels (see
// elastic_plan.cuh and elastic_gather.cuh); no checking beyond what keeps them in bounds, the
// same device-side clamps the kernels apply.
#include <cstdint>

namespace specontext::ref {

struct ElasticPlanParams {
  const std::int32_t* selection = nullptr;
  std::int64_t sel_request_stride = 0, sel_head_stride = 0;
  const std::int32_t* selection_counts = nullptr;
  std::int64_t count_request_stride = 0, count_head_stride = 0;
  const std::int32_t* slots = nullptr;    // [requests]
  const std::int32_t* current = nullptr;  // [requests]
  std::int32_t* slot_positions = nullptr;  // [max_requests][kv_heads][slot_count], updated
  int requests = 0, kv_heads = 0, slot_count = 0, max_requests = 0;
  std::int32_t* attend_slots = nullptr;    // [requests][kv_heads][slot_count + 1]
  std::int32_t* attend_counts = nullptr;   // [requests * kv_heads]
  std::int32_t* load_positions = nullptr;  // [requests][kv_heads][slot_count]
  std::int32_t* load_slots = nullptr;
  std::int32_t* load_counts = nullptr;
  unsigned long long* loaded_total = nullptr;  // optional
};

// Plans every (request, KV head) and updates slot_positions. Output entries past the counts are
// left as they were.
void elastic_plan(const ElasticPlanParams& p);

struct ElasticCopyShape {
  std::int64_t host_positions = 0;
  int host_layers = 0, layer_begin = 0, layer_end = 0;
  int requests = 0, kv_heads = 0, max_requests = 0, slot_count = 0, head_dim = 0;
};

// host_kv [max_requests][kv_heads][host_positions][host_layers][2][head_dim] -> k_slots / v_slots
// [host_layers][max_requests][kv_heads][slot_count + 1][head_dim], the rows elastic_plan planned.
void elastic_gather(const ElasticCopyShape& s, const std::uint16_t* host_kv, std::uint16_t* k_slots, std::uint16_t* v_slots,
                    const std::int32_t* slots, const std::int32_t* load_positions, const std::int32_t* load_slots,
                    const std::int32_t* load_counts);

// Slot slot_count of k_slots / v_slots -> host_kv at position current[i], layers [begin, end).
void elastic_store_current(const ElasticCopyShape& s, std::uint16_t* host_kv, const std::uint16_t* k_slots,
                           const std::uint16_t* v_slots, const std::int32_t* slots, const std::int32_t* current);

}  // namespace specontext::ref
