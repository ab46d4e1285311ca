#pragma once
// Costs of the operations of a transformer step, counted once here for every system:
// FLOPs and HBM bytes from the model's shape, for `tokens` new tokens (decode: R, prefill:
// R*S). Counts are written out in the .cpp so tests can check them by hand.
#include "sim/model_shape.hpp"
#include "sim/op_cost.hpp"

namespace specontext::ops {

constexpr double kAct = 2.0;  // bytes per activation / KV element (bf16/fp16)

// A dense projection tokens x in -> tokens x out: weights streamed once, activations in and out.
Op projection(const char* name, const char* category, int layer, double tokens, double in, double out);

Op attention_norm(const ModelShape& m, int layer, double tokens);
Op qkv_projection(const ModelShape& m, int layer, double tokens);
Op rope_and_kv_append(const ModelShape& m, int layer, double tokens);
Op output_projection(const ModelShape& m, int layer, double tokens);
Op ffn(const ModelShape& m, int layer, double tokens);  // norm + gate/up + SwiGLU + down
Op lm_head(const ModelShape& m, double tokens);
Op embedding(const ModelShape& m, double tokens);
Op sampling(const ModelShape& m, double requests);

// Decode attention of `requests` queries, each over `kv_tokens` cached tokens per KV head,
// reading K and V once (flash-decoding style).
Op decode_attention(const ModelShape& m, int layer, double requests, double kv_tokens);
// Causal prefill attention over a prompt of `length` tokens (tiled: no score matrix in memory).
Op prefill_attention(const ModelShape& m, int layer, double requests, double length);

// Bytes of K and V one token adds to one layer, and of one KV head's row (K|V of one token).
double kv_bytes_per_token_layer(const ModelShape& m);
double kv_row_bytes(const ModelShape& m);

}  // namespace specontext::ops
