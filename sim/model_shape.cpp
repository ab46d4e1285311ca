#include "sim/model_shape.hpp"

#include <set>

#include "sim/json_fields.hpp"

namespace specontext {
namespace {

// Every top-level key of the Hugging Face configs we accept. A key outside this list is
// rejected: it may change the model's shape in a way the simulator would silently ignore.
const std::set<std::string> kKnownKeys = {
    // shape
    "architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "max_position_embeddings",
    "tie_word_embeddings", "attention_bias", "mlp_bias", "torch_dtype", "dtype",
    // MLA
    "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
    // mixture of experts: accepted only when they describe a dense model
    "n_routed_experts", "num_experts", "num_local_experts", "n_shared_experts", "moe_intermediate_size",
    "num_experts_per_tok", "first_k_dense_replace", "moe_layer_freq", "norm_topk_prob",
    "routed_scaling_factor", "scoring_func", "topk_method", "n_group", "topk_group", "aux_loss_alpha",
    "seq_aux", "ep_size", "output_router_logits", "router_aux_loss_coef", "decoder_sparse_step",
    "mlp_only_layers", "shared_expert_intermediate_size",
    // EAGLE-3 drafts
    "draft_vocab_size", "target_hidden_size", "eagle_config", "modules_to_not_convert",
    "eagle_aux_hidden_state_layer_ids",
    // RoPE and attention details that do not change sizes
    "rope_scaling", "rope_theta", "rope_parameters", "partial_rotary_factor", "rope_interleave",
    "sliding_window", "use_sliding_window", "max_window_layers", "layer_types",
    "attention_dropout", "hidden_act", "rms_norm_eps", "layer_norm_eps", "initializer_range",
    "pretraining_tp", "use_cache", "bos_token_id", "eos_token_id", "pad_token_id",
    "transformers_version", "_name_or_path", "auto_map", "quantization_config", "scale_emb",
    "scale_depth", "dim_model_base", "embedding_multiplier", "logits_scaling", "residual_multiplier",
    "attention_multiplier", "cache_implementation",
};

const std::set<std::string> kKnownArchitectures = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM", "DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM", "MiniCPM3ForCausalLM",
};

long long positive_int(const JsonFields& f, const std::string& key) {
  long long v = f.integer(key);
  if (v <= 0) f.fail(key, "must be a positive integer, got " + std::to_string(v));
  return v;
}

long long optional_positive_int(const JsonFields& f, const std::string& key, long long fallback) {
  if (!f.has(key)) return fallback;
  return positive_int(f, key);
}

void reject_active_moe(const JsonFields& f) {
  for (const char* key : {"n_routed_experts", "num_experts", "num_local_experts"}) {
    if (!f.has(key)) continue;
    if (!f.raw(key).is_number()) f.fail(key, "expected a number");
    if (f.raw(key).get<double>() > 0) f.fail(key, "mixture-of-experts layers are not modelled by the simulator");
  }
}

void check_dtype(const JsonFields& f) {
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!f.has(key)) continue;
    std::string d = f.string(key);
    if (d != "bfloat16" && d != "float16" && d != "float32")
      f.fail(key, "unsupported dtype '" + d + "' (expected bfloat16, float16 or float32)");
  }
}

void check_rope_scaling(const JsonFields& f) {
  if (!f.has("rope_scaling")) return;
  const auto& rs = f.raw("rope_scaling");
  if (!rs.is_object()) f.fail("rope_scaling", "expected an object or null");
  const nlohmann::json type_field = rs.contains("rope_type") ? rs.at("rope_type") : rs.value("type", nlohmann::json());
  if (!type_field.is_string()) f.fail("rope_scaling", "rope_type must be a string");
  const std::string type = type_field.get<std::string>();
  static const std::set<std::string> types = {"default", "linear", "dynamic", "llama3", "yarn", "longrope"};
  if (!types.count(type)) f.fail("rope_scaling", "unknown rope_type '" + type + "'");
}

}  // namespace

const char* to_string(AttentionKind k) {
  switch (k) {
    case AttentionKind::MHA: return "MHA";
    case AttentionKind::GQA: return "GQA";
    case AttentionKind::MQA: return "MQA";
    case AttentionKind::MLA: return "MLA";
  }
  return "?";
}

AttentionKind ModelShape::attention_kind() const {
  if (kv_lora_rank > 0) return AttentionKind::MLA;
  if (kv_heads == q_heads) return AttentionKind::MHA;
  if (kv_heads == 1) return AttentionKind::MQA;
  return AttentionKind::GQA;
}

double ModelShape::group_size() const {
  if (attention_kind() == AttentionKind::MLA) return 1.0;
  return static_cast<double>(q_heads) / static_cast<double>(kv_heads);
}

double ModelShape::kv_elements_per_token_layer() const {
  if (attention_kind() == AttentionKind::MLA) return static_cast<double>(kv_lora_rank + qk_rope_head_dim);
  return 2.0 * static_cast<double>(kv_heads * head_dim);
}

double ModelShape::layer_params() const {
  const double h = static_cast<double>(hidden);
  double attn = 0;
  if (attention_kind() == AttentionKind::MLA) {
    const double qk = static_cast<double>(qk_nope_head_dim + qk_rope_head_dim);
    const double nq = static_cast<double>(q_heads);
    attn += q_lora_rank > 0 ? h * q_lora_rank + q_lora_rank + q_lora_rank * nq * qk : h * nq * qk;
    attn += h * static_cast<double>(kv_lora_rank + qk_rope_head_dim) + kv_lora_rank;
    attn += static_cast<double>(kv_lora_rank) * nq * static_cast<double>(qk_nope_head_dim + v_head_dim);
    attn += nq * static_cast<double>(v_head_dim) * h;
  } else {
    const double q = static_cast<double>(q_heads * head_dim), kv = static_cast<double>(kv_heads * head_dim);
    // EAGLE-3's single layer projects the 2*hidden concatenation of embedding and fc output.
    const double in = eagle3_draft ? 2 * h : h;
    attn = in * (q + 2 * kv) + q * h;
    if (attention_bias) attn += q + 2 * kv;
    if (qk_norm) attn += 2.0 * static_cast<double>(head_dim);
  }
  const double mlp = 3.0 * h * static_cast<double>(ffn);
  const double norms = (eagle3_draft ? 3.0 : 2.0) * h;
  return attn + mlp + norms;
}

double ModelShape::total_params() const {
  const double h = static_cast<double>(hidden);
  if (eagle3_draft) {
    // fc over three target features, the layer, final norm, reduced-vocabulary LM head.
    // The embedding is shared with the target and not counted (PAPER.md §1.3).
    const double fc = 3.0 * static_cast<double>(target_hidden) * h;
    return fc + static_cast<double>(layers) * layer_params() + h + h * static_cast<double>(draft_vocab);
  }
  const double embed = static_cast<double>(vocab) * h;
  return embed + (tied_embeddings ? 0.0 : embed) + static_cast<double>(layers) * layer_params() + h;
}

double ModelShape::streamed_weight_bytes() const {
  if (eagle3_draft || tied_embeddings) return weight_bytes();
  return weight_bytes() - static_cast<double>(vocab * hidden) * weight_bytes_per_param;
}

ModelShape parse_model_config(const nlohmann::json& j, const std::string& origin) {
  JsonFields f(j, origin);
  for (const auto& [key, _] : j.items())
    if (!kKnownKeys.count(key)) f.fail(key, "unknown config field (not one the simulator knows how to treat)");

  ModelShape m;
  m.origin = origin;
  const auto& arch = f.raw("architectures");
  if (!arch.is_array() || arch.empty() || !arch[0].is_string()) f.fail("architectures", "expected a list of names");
  m.architecture = arch[0].get<std::string>();
  if (!kKnownArchitectures.count(m.architecture)) f.fail("architectures", "unknown architecture '" + m.architecture + "'");
  reject_active_moe(f);
  check_dtype(f);
  check_rope_scaling(f);
  if (f.boolean_or("use_sliding_window", false)) f.fail("use_sliding_window", "sliding-window attention is not modelled");

  m.layers = positive_int(f, "num_hidden_layers");
  m.hidden = positive_int(f, "hidden_size");
  m.q_heads = positive_int(f, "num_attention_heads");
  m.kv_heads = optional_positive_int(f, "num_key_value_heads", m.q_heads);
  m.ffn = positive_int(f, "intermediate_size");
  m.vocab = positive_int(f, "vocab_size");
  m.max_positions = optional_positive_int(f, "max_position_embeddings", 0);
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  m.attention_bias = f.boolean_or("attention_bias", m.architecture == "Qwen2ForCausalLM");
  m.qk_norm = m.architecture == "Qwen3ForCausalLM";
  if (f.boolean_or("mlp_bias", false)) f.fail("mlp_bias", "MLP biases are not modelled");

  if (m.kv_heads > m.q_heads)
    f.fail("num_key_value_heads", "is " + std::to_string(m.kv_heads) + ", more than num_attention_heads " + std::to_string(m.q_heads));
  if (m.q_heads % m.kv_heads != 0)
    f.fail("num_key_value_heads", "num_attention_heads " + std::to_string(m.q_heads) + " is not a multiple of " + std::to_string(m.kv_heads));

  m.kv_lora_rank = optional_positive_int(f, "kv_lora_rank", 0);
  if (m.kv_lora_rank > 0) {
    for (const char* key : {"qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"})
      if (!f.has(key)) f.fail(key, "required for MLA (kv_lora_rank is set)");
    m.qk_rope_head_dim = positive_int(f, "qk_rope_head_dim");
    m.qk_nope_head_dim = positive_int(f, "qk_nope_head_dim");
    m.v_head_dim = positive_int(f, "v_head_dim");
    if (f.has("q_lora_rank")) m.q_lora_rank = optional_positive_int(f, "q_lora_rank", 0);
    m.kv_heads = m.q_heads;  // MLA keeps every head (PAPER.md §1.6)
    m.head_dim = m.qk_nope_head_dim + m.qk_rope_head_dim;
    if (f.has("head_dim") && positive_int(f, "head_dim") != m.head_dim && positive_int(f, "head_dim") != m.qk_rope_head_dim)
      f.fail("head_dim", "contradicts qk_nope_head_dim + qk_rope_head_dim = " + std::to_string(m.head_dim));
  } else {
    for (const char* key : {"qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "q_lora_rank"})
      if (f.has(key)) f.fail(key, "is an MLA field but kv_lora_rank is absent");
    if (f.has("head_dim")) {
      m.head_dim = positive_int(f, "head_dim");
    } else {
      if (m.hidden % m.q_heads != 0)
        f.fail("head_dim", "absent and hidden_size " + std::to_string(m.hidden) + " is not divisible by num_attention_heads");
      m.head_dim = m.hidden / m.q_heads;
    }
  }

  m.eagle3_draft = f.has("draft_vocab_size") || m.architecture.find("Eagle3") != std::string::npos;
  if (m.eagle3_draft) {
    m.draft_vocab = optional_positive_int(f, "draft_vocab_size", m.vocab);
    m.target_hidden = optional_positive_int(f, "target_hidden_size", m.hidden);
    if (m.draft_vocab > m.vocab) f.fail("draft_vocab_size", "larger than vocab_size");
    if (m.layers != 1) f.fail("num_hidden_layers", "an EAGLE-3 draft has exactly one decoder layer");
  } else if (f.has("target_hidden_size")) {
    f.fail("target_hidden_size", "only EAGLE-3 drafts have it (draft_vocab_size is absent)");
  }
  return m;
}

ModelShape load_model_config(const std::filesystem::path& path) {
  ModelShape m = parse_model_config(read_json_file(path), path.string());
  m.name = path.stem().string();
  return m;
}

DraftPart parse_draft_part(const std::string& s) {
  if (s == "full") return DraftPart::Full;
  if (s == "head") return DraftPart::HeadEagleInput;
  if (s == "head-embed") return DraftPart::HeadEmbedInput;
  throw ConfigError("--draft-part", "", "expected full, head or head-embed, got '" + s + "'");
}

const char* to_string(DraftPart p) {
  switch (p) {
    case DraftPart::Full: return "full";
    case DraftPart::HeadEagleInput: return "head";
    case DraftPart::HeadEmbedInput: return "head-embed";
  }
  return "?";
}

double draft_bytes(const ModelShape& d, DraftPart part) {
  const double h = static_cast<double>(d.hidden);
  const double q = static_cast<double>(d.q_heads * d.head_dim), k = static_cast<double>(d.kv_heads * d.head_dim);
  switch (part) {
    case DraftPart::Full:
      return d.weight_bytes();
    case DraftPart::HeadEagleInput:  // fc, the two input norms, Q and K over the 2*hidden input
      return (3.0 * static_cast<double>(d.target_hidden) * h + 2 * h + 2 * h * (q + k)) * d.weight_bytes_per_param;
    case DraftPart::HeadEmbedInput:  // Q and K columns of the embedding half only, one norm
      return (h + h * (q + k)) * d.weight_bytes_per_param;
  }
  return 0;
}

ModelShape eagle3_draft_for(const ModelShape& t) {
  ModelShape d = t;
  d.name = "eagle3-for-" + t.name;
  d.architecture = "LlamaForCausalLMEagle3";
  d.origin = "derived from " + t.origin;
  d.layers = 1;
  d.eagle3_draft = true;
  d.draft_vocab = std::min<long long>(32000, t.vocab);
  d.target_hidden = t.hidden;
  d.attention_bias = false;
  d.qk_norm = false;
  if (t.attention_kind() == AttentionKind::MLA) {
    // EAGLE-3 drafts are Llama layers: give an MLA target's draft plain heads of the same count.
    d.kv_lora_rank = d.q_lora_rank = d.qk_rope_head_dim = d.qk_nope_head_dim = d.v_head_dim = 0;
    d.kv_heads = t.q_heads;
    d.head_dim = t.head_dim;
  }
  return d;
}

}  // namespace specontext
