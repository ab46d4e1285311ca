#pragma once
// The shape of a transformer as the simulator sees it, parsed from a Hugging Face
// config.json (target LLMs and EAGLE-3 drafts). Covers MHA, GQA and MQA (from
// num_key_value_heads) and MLA (kv_lora_rank, qk_rope_head_dim, ...).
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace specontext {

enum class AttentionKind { MHA, GQA, MQA, MLA };
const char* to_string(AttentionKind k);

struct ModelShape {
  std::string name;          // file stem or "name" given by the caller
  std::string architecture;  // architectures[0]
  std::string origin;        // file it was read from

  long long layers = 0;
  long long hidden = 0;
  long long q_heads = 0;
  long long kv_heads = 0;
  long long head_dim = 0;  // per query/key head; for MLA qk_nope + qk_rope
  long long ffn = 0;       // intermediate_size
  long long vocab = 0;
  long long max_positions = 0;
  bool tied_embeddings = false;
  bool attention_bias = false;  // Qwen2-style QKV bias
  bool qk_norm = false;         // Qwen3-style q/k RMSNorm
  double weight_bytes_per_param = 2.0;  // bf16/fp16

  // MLA (DeepSeek-V2 style latent KV); zero when absent.
  long long kv_lora_rank = 0;
  long long q_lora_rank = 0;
  long long qk_rope_head_dim = 0;
  long long qk_nope_head_dim = 0;
  long long v_head_dim = 0;

  // EAGLE-3 draft fields; zero when the config is not a draft.
  bool eagle3_draft = false;
  long long draft_vocab = 0;
  long long target_hidden = 0;  // hidden size of the target the draft reads features from

  AttentionKind attention_kind() const;
  // Query heads per KV head: the paper's alpha (1 for MHA and MLA).
  double group_size() const;
  // Elements of KV cache one token adds to one layer (K and V; MLA: latent + rope key).
  double kv_elements_per_token_layer() const;
  // Parameters of one decoder layer (attention + FFN + norms).
  double layer_params() const;
  // Parameters of the whole model: embeddings, layers, final norm, LM head.
  double total_params() const;
  double weight_bytes() const { return total_params() * weight_bytes_per_param; }
  // Weight bytes read per decode step (embedding rows are gathered, not streamed).
  double streamed_weight_bytes() const;
};

ModelShape parse_model_config(const nlohmann::json& j, const std::string& origin);
ModelShape load_model_config(const std::filesystem::path& path);

// An EAGLE-3 draft's size and what the retrieval head keeps of it.
enum class DraftPart { Full, HeadEagleInput, HeadEmbedInput };
DraftPart parse_draft_part(const std::string& s);  // "full", "head", "head-embed"
const char* to_string(DraftPart p);

// Bytes of the draft, not counting the embedding it shares with the target (PAPER.md §1.3).
double draft_bytes(const ModelShape& draft, DraftPart part);

// The EAGLE-3 draft shape for a target that ships no draft config: one decoder layer of the
// target's attention shape and FFN, a 32,000-token draft vocabulary, as the public drafts have.
ModelShape eagle3_draft_for(const ModelShape& target);

}  // namespace specontext
