#include "sim/transformer_ops.hpp"

namespace specontext::ops {
namespace {
double d(long long v) { return static_cast<double>(v); }
}  // namespace

Op projection(const char* name, const char* category, int layer, double tokens, double in, double out) {
  Op op;
  op.name = name;
  op.category = category;
  op.layer = layer;
  op.flops = 2.0 * tokens * in * out;
  op.hbm_bytes = in * out * kAct + tokens * (in + out) * kAct;
  op.launches = 1;
  return op;
}

Op attention_norm(const ModelShape& m, int layer, double tokens) {
  Op op;
  op.name = "attn_norm";
  op.category = "norm";
  op.layer = layer;
  op.flops = 4.0 * tokens * d(m.hidden);
  op.hbm_bytes = 2.0 * tokens * d(m.hidden) * kAct + d(m.hidden) * kAct;
  op.launches = 1;
  return op;
}

Op qkv_projection(const ModelShape& m, int layer, double tokens) {
  double out = 0;
  if (m.attention_kind() == AttentionKind::MLA) {
    const double qk = d(m.qk_nope_head_dim + m.qk_rope_head_dim);
    // q (through its LoRA when present) and the compressed KV with the rope key.
    out = d(m.q_heads) * qk + d(m.kv_lora_rank + m.qk_rope_head_dim);
  } else {
    out = d((m.q_heads + 2 * m.kv_heads) * m.head_dim);
  }
  Op op = projection("qkv_proj", "proj", layer, tokens, d(m.hidden), out);
  if (m.attention_bias) op.hbm_bytes += out * kAct;
  return op;
}

Op rope_and_kv_append(const ModelShape& m, int layer, double tokens) {
  Op op;
  op.name = "rope_kv_append";
  op.category = "attention";
  op.layer = layer;
  const double q = d(m.q_heads * m.head_dim);
  op.flops = 6.0 * tokens * (q + d(m.kv_heads * m.head_dim));
  op.hbm_bytes = tokens * (2.0 * q * kAct + 2.0 * m.kv_elements_per_token_layer() * kAct);
  op.launches = 1;
  return op;
}

Op output_projection(const ModelShape& m, int layer, double tokens) {
  const double in = m.attention_kind() == AttentionKind::MLA ? d(m.q_heads * m.v_head_dim) : d(m.q_heads * m.head_dim);
  return projection("o_proj", "proj", layer, tokens, in, d(m.hidden));
}

Op ffn(const ModelShape& m, int layer, double tokens) {
  Op op;
  op.name = "mlp";
  op.category = "mlp";
  op.layer = layer;
  const double h = d(m.hidden), f = d(m.ffn);
  op.flops = 2.0 * tokens * 3.0 * h * f + 4.0 * tokens * h;
  // weights of gate, up and down; activations: in, the 2f gate/up outputs, the f product, out.
  op.hbm_bytes = 3.0 * h * f * kAct + tokens * (2.0 * h + 4.0 * f) * kAct;
  op.launches = 4;  // norm, gate+up, SwiGLU, down
  return op;
}

Op lm_head(const ModelShape& m, double tokens) {
  Op op = projection("lm_head", "proj", -1, tokens, d(m.hidden), d(m.vocab));
  op.hbm_bytes += tokens * d(m.vocab) * 4.0;  // fp32 logits
  return op;
}

Op embedding(const ModelShape& m, double tokens) {
  Op op;
  op.name = "embedding";
  op.category = "embed";
  op.hbm_bytes = 2.0 * tokens * d(m.hidden) * kAct;
  op.launches = 1;
  return op;
}

Op sampling(const ModelShape& m, double requests) {
  Op op;
  op.name = "sample";
  op.category = "sample";
  op.hbm_bytes = requests * d(m.vocab) * 4.0 * 2.0;
  op.launches = 2;
  return op;
}

Op decode_attention(const ModelShape& m, int layer, double requests, double kv_tokens) {
  Op op;
  op.name = "attention";
  op.category = "attention";
  op.layer = layer;
  const double nq = d(m.q_heads);
  if (m.attention_kind() == AttentionKind::MLA) {
    // Absorbed MLA decode: scores against latent+rope keys, values from the latent.
    op.flops = 2.0 * requests * nq * kv_tokens * (d(m.kv_lora_rank + m.qk_rope_head_dim) + d(m.kv_lora_rank));
  } else {
    op.flops = 4.0 * requests * nq * d(m.head_dim) * kv_tokens;  // q.k and p.v
  }
  op.hbm_bytes = requests * kv_tokens * m.kv_elements_per_token_layer() * kAct + 2.0 * requests * nq * d(m.head_dim) * kAct;
  op.launches = 2;  // split-K partials + merge
  return op;
}

Op prefill_attention(const ModelShape& m, int layer, double requests, double length) {
  Op op;
  op.name = "prefill_attention";
  op.category = "attention";
  op.layer = layer;
  // causal: half of the length x length score matrix
  op.flops = 4.0 * requests * d(m.q_heads) * d(m.head_dim) * length * length / 2.0;
  op.hbm_bytes = requests * length * (m.kv_elements_per_token_layer() + 2.0 * d(m.q_heads * m.head_dim)) * kAct;
  op.launches = 1;
  return op;
}

double kv_bytes_per_token_layer(const ModelShape& m) { return m.kv_elements_per_token_layer() * kAct; }

double kv_row_bytes(const ModelShape& m) {
  return kv_bytes_per_token_layer(m) / d(m.attention_kind() == AttentionKind::MLA ? 1 : m.kv_heads);
}

}  // namespace specontext::ops
