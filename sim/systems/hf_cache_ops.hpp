#pragma once
// What Hugging Face transformers' DynamicCache and eager attention cost, shared by the
// hf-eager and hf-flash models.
#include "sim/transformer_ops.hpp"

namespace specontext::ops {

// DynamicCache.update appends with torch.cat: every step reads the layer's whole cache and
// writes it again with the new token.
inline Op hf_cache_cat(const ModelShape& m, int layer, double requests, double S, double efficiency) {
  Op op;
  op.name = "kv_cat";
  op.category = "attention";
  op.layer = layer;
  op.hbm_bytes = requests * (2.0 * S + 1.0) * kv_bytes_per_token_layer(m);
  op.launches = 2;
  op.efficiency = efficiency;
  return op;
}

// repeat_kv: materialises K and V for every query head (GQA/MQA); absent for MHA.
inline Op hf_repeat_kv(const ModelShape& m, int layer, double requests, double S, double efficiency) {
  Op op;
  op.name = "repeat_kv";
  op.category = "attention";
  op.layer = layer;
  op.hbm_bytes = requests * S * kv_bytes_per_token_layer(m) * (1.0 + m.group_size());
  op.launches = 2;
  op.efficiency = efficiency;
  return op;
}

}  // namespace specontext::ops
