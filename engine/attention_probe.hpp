#pragma once
// What a decode step shows a probe at each layer, for one request (the trace recorder's view,
// engine/trace_recorder.hpp; both backends can show it): the dense attention of each KV head's group
// (each query head's softmax over positions 0..t, then the mean over the group), [kv_heads][positions];
// the layer's roped keys, [positions][kv_heads * head_dim]; the step's roped query heads,
// [q_heads * head_dim].
#include <cstdint>

namespace specontext {

class AttentionProbe {
 public:
  virtual ~AttentionProbe() = default;
  virtual void layer(int layer, std::int64_t positions, const float* group_attention, const float* keys, const float* queries) = 0;
};

}  // namespace specontext
