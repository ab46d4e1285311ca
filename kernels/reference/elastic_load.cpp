#include "kernels/reference/elastic_load.hpp"

#include <algorithm>
#include <vector>

namespace specontext::ref {

void elastic_plan(const ElasticPlanParams& p) {
  const int n = p.slot_count;
  for (int i = 0; i < p.requests; ++i) {
    for (int g = 0; g < p.kv_heads; ++g) {
      const std::int64_t b = static_cast<std::int64_t>(i) * p.kv_heads + g;
      const int row = p.slots[i];
      if (row < 0 || row >= p.max_requests) {
        p.attend_counts[b] = 0;
        p.load_counts[b] = 0;
        continue;
      }
      const int cur = p.current[i];
      const std::int32_t* list = p.selection + i * p.sel_request_stride + g * p.sel_head_stride;
      const int cnt = std::clamp(p.selection_counts[i * p.count_request_stride + g * p.count_head_stride], 0, n + 1);
      const bool has_cur = cnt > 0 && list[cnt - 1] == cur;
      const int m = std::min(cnt - (has_cur ? 1 : 0), n);  // past positions planned
      std::int32_t* table = p.slot_positions + (static_cast<std::int64_t>(row) * p.kv_heads + g) * n;

      // Which slot keeps each listed position: the lowest slot holding it as valid history.
      std::vector<int> holder(static_cast<std::size_t>(m), -1);
      std::vector<bool> kept(static_cast<std::size_t>(n), false);
      for (int s = 0; s < n; ++s) {
        const int q = table[s];
        if (q < 0 || q >= cur) continue;
        const std::int32_t* at = std::lower_bound(list, list + m, q);
        if (at == list + m || *at != q) continue;
        const std::size_t j = static_cast<std::size_t>(at - list);
        if (holder[j] >= 0) continue;
        holder[j] = s;
        kept[static_cast<std::size_t>(s)] = true;
      }
      std::vector<int> free_slots;
      for (int s = 0; s < n; ++s)
        if (!kept[static_cast<std::size_t>(s)]) free_slots.push_back(s);

      std::int32_t* attend = p.attend_slots + b * (n + 1);
      std::int32_t* load_pos = p.load_positions + b * n;
      std::int32_t* load_slot = p.load_slots + b * n;
      int loads = 0;
      for (int j = 0; j < m; ++j) {
        if (holder[static_cast<std::size_t>(j)] >= 0) {
          attend[j] = holder[static_cast<std::size_t>(j)];
          continue;
        }
        const int slot = free_slots[static_cast<std::size_t>(loads)];  // exists: free >= n - m + missing
        load_pos[loads] = list[j];
        load_slot[loads] = slot;
        attend[j] = slot;
        table[slot] = list[j];
        ++loads;
      }
      // Free slots no load filled keep their position unless it is not valid history.
      for (std::size_t k = static_cast<std::size_t>(loads); k < free_slots.size(); ++k) {
        std::int32_t& q = table[free_slots[k]];
        if (q < 0 || q >= cur) q = -1;
      }
      attend[m] = n;
      p.attend_counts[b] = m + 1;
      p.load_counts[b] = loads;
      if (p.loaded_total != nullptr) *p.loaded_total += static_cast<unsigned long long>(loads);
    }
  }
}

namespace {

std::int64_t host_offset(const ElasticCopyShape& s, int r, int g, std::int64_t pos, int layer, int kv) {
  return ((((static_cast<std::int64_t>(r) * s.kv_heads + g) * s.host_positions + pos) * s.host_layers + layer) * 2 + kv) * s.head_dim;
}

std::int64_t slot_offset(const ElasticCopyShape& s, int layer, int r, int g, int slot) {
  return (((static_cast<std::int64_t>(layer) * s.max_requests + r) * s.kv_heads + g) * (s.slot_count + 1) + slot) * s.head_dim;
}

}  // namespace

void elastic_gather(const ElasticCopyShape& s, const std::uint16_t* host_kv, std::uint16_t* k_slots, std::uint16_t* v_slots,
                    const std::int32_t* slots, const std::int32_t* load_positions, const std::int32_t* load_slots,
                    const std::int32_t* load_counts) {
  for (int i = 0; i < s.requests; ++i) {
    const int r = slots[i];
    if (r < 0 || r >= s.max_requests) continue;
    for (int g = 0; g < s.kv_heads; ++g) {
      const std::int64_t b = static_cast<std::int64_t>(i) * s.kv_heads + g;
      const int count = std::clamp(load_counts[b], 0, s.slot_count);
      for (int k = 0; k < count; ++k) {
        const int pos = load_positions[b * s.slot_count + k], slot = load_slots[b * s.slot_count + k];
        if (pos < 0 || pos >= s.host_positions || slot < 0 || slot >= s.slot_count) continue;
        for (int l = s.layer_begin; l < s.layer_end; ++l) {
          std::copy_n(host_kv + host_offset(s, r, g, pos, l, 0), s.head_dim, k_slots + slot_offset(s, l, r, g, slot));
          std::copy_n(host_kv + host_offset(s, r, g, pos, l, 1), s.head_dim, v_slots + slot_offset(s, l, r, g, slot));
        }
      }
    }
  }
}

void elastic_store_current(const ElasticCopyShape& s, std::uint16_t* host_kv, const std::uint16_t* k_slots,
                           const std::uint16_t* v_slots, const std::int32_t* slots, const std::int32_t* current) {
  for (int i = 0; i < s.requests; ++i) {
    const int r = slots[i];
    const int pos = current[i];
    if (r < 0 || r >= s.max_requests || pos < 0 || pos >= s.host_positions) continue;
    for (int g = 0; g < s.kv_heads; ++g)
      for (int l = s.layer_begin; l < s.layer_end; ++l) {
        std::copy_n(k_slots + slot_offset(s, l, r, g, s.slot_count), s.head_dim, host_kv + host_offset(s, r, g, pos, l, 0));
        std::copy_n(v_slots + slot_offset(s, l, r, g, s.slot_count), s.head_dim, host_kv + host_offset(s, r, g, pos, l, 1));
      }
  }
}

}  // namespace specontext::ref
