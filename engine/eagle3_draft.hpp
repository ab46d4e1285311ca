#pragma once
// An EAGLE-3 draft (the distilled LM) as SpeContext's retrieval head needs it (PAPER.md §1.3): the
// draft's config, checked against the target LLM it drafts for, and only the weights that lead to
// its attention scores — fc, the two input norms, the q and k projections and, when the draft ships
// one, the token embedding. V, O, the MLP, the final norm, the LM head and the vocabulary maps
// (d2t, t2d) stay on disk.
//
// Layout (EAGLE-3's names, as models/train/eagle3_draft.py and the released drafts such as
// yuhuili/EAGLE3-LLaMA3.1-Instruct-8B use them); h = hidden_size, th = target_hidden_size:
//   fc.weight                         [h, 3*th]           target features -> h
//   midlayer.hidden_norm.weight       [h]                 RMSNorm of fc's output
//   midlayer.input_layernorm.weight   [h]                 RMSNorm of the token embedding
//   midlayer.self_attn.q_proj.weight  [heads*d, 2*h]      input: normed embedding ⊕ normed fc output
//   midlayer.self_attn.k_proj.weight  [kv_heads*d, 2*h]   (embedding first)
//   embed_tokens.weight               [vocab, h]          optional: else the target's embedding
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model_config.hpp"
#include "engine/weights.hpp"

namespace specontext {

struct Eagle3DraftConfig {
  // The draft's one Llama layer: hidden size, query and KV heads, head_dim (default hidden/heads),
  // RoPE (rope_theta, or rope_parameters.rope_theta as transformers 5 writes it), rms_norm_eps,
  // max_position_embeddings, vocab_size; `origin` is the config.json.
  ModelConfig layer;
  std::int64_t target_hidden = 0;  // target_hidden_size, default hidden_size
  std::int64_t draft_vocab = 0;    // draft_vocab_size (the LM head's; unused by the retrieval head)
  // The target layers whose input residual streams (Hugging Face hidden_states[l]) form fc's input,
  // in that order: eagle_aux_hidden_state_layer_ids, default [2, L/2, L-3] for a target of L layers
  // (EAGLE-3's low/middle/high choice as vLLM applies it).
  std::vector<int> aux_layers;
};

struct Eagle3DraftWeights {
  Matrix fc;                       // [hidden, 3 * target_hidden]
  std::vector<float> hidden_norm;  // [hidden]
  std::vector<float> input_norm;   // [hidden]
  Matrix q;                        // [q_heads * head_dim, 2 * hidden]
  Matrix k;                        // [kv_heads * head_dim, 2 * hidden]
  Matrix embed;                    // [vocab, hidden] if the draft ships embed_tokens.weight; else empty
};

struct Eagle3Draft {
  Eagle3DraftConfig config;
  Eagle3DraftWeights weights;
};

// Parses a draft's config.json and checks it against the target's config. The architecture must be
// LlamaForCausalLMEagle3 or Eagle3LlamaForCausalLM, or LlamaForCausalLM with draft_vocab_size (how
// yuhuili's released Llama-3.1 drafts label themselves). The draft must read the target's hidden
// size (target_hidden_size), share its vocabulary (vocab_size) and have its KV head count
// (num_key_value_heads: head-level selection maps draft KV head h to target KV head h); the aux
// layers must exist in the target. Errors are ConfigErrors naming the draft's config and the field.
Eagle3DraftConfig parse_eagle3_draft_config(const nlohmann::json& j, const std::string& origin, const ModelConfig& target);

// Loads DIR/config.json and the retrieval head's tensors from DIR/model.safetensors (or the shards
// of model.safetensors.index.json), bf16/fp16/fp32 converted to fp32. A missing tensor, a wrong
// shape or a non-float dtype is an error naming the tensor and the file; a folder holding only
// pytorch_model.bin is an error saying that safetensors is needed. Without embed_tokens.weight the
// target's embedding is used, so the draft's hidden size must equal the target's.
Eagle3Draft load_eagle3_draft(const std::filesystem::path& dir, const ModelConfig& target);

// YaRN for contexts longer than the draft was trained on (PAPER.md §1.3: the paper extends its drafts
// this way): when `context` LLM positions exceed the draft's max_position_embeddings and its config
// names no rope_scaling of its own, RoPE becomes YaRN with factor context / max_position_embeddings
// over that original length (transformers' defaults beta_fast 32, beta_slow 1). Returns whether it did.
bool extend_draft_context(Eagle3DraftConfig& config, std::int64_t context);

// A draft config.json (a file) parsed and checked as above, for drafts we have no weights for.
Eagle3DraftConfig load_eagle3_draft_config(const std::filesystem::path& file, const ModelConfig& target);
// Seeded random retrieval-head weights at the config's shapes (normal, std 0.02; norms 1), no
// embedding (the target's serves): benchmarks at the real shapes of drafts we have no weights for.
Eagle3DraftWeights random_eagle3_draft_weights(const Eagle3DraftConfig& config, std::uint64_t seed);

}  // namespace specontext
