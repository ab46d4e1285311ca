#include "engine/gguf_model.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "sim/config_error.hpp"

namespace specontext {
namespace {

std::int64_t positive(const GgufFile& f, const std::string& key) {
  const std::int64_t v = f.integer(key);
  require_positive(v, f.path().string(), key);
  return v;
}

// HF's Llama 3 divisor of one inverse frequency (transformers' _compute_llama3_parameters and
// llama.cpp's converter, which stores inv_freq / inv_freq_llama3 as rope_freqs.weight).
double llama3_divisor(double inv_freq, double factor, double low, double high, double original) {
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  if (wavelen < original / high) return 1.0;
  if (wavelen > original / low) return factor;
  const double smooth = (original / wavelen - low) / (high - low);
  return 1.0 / ((1 - smooth) / factor + smooth);
}

// llama.cpp keeps no Llama 3 parameters in the metadata, only rope_freqs.weight, the divisor of each
// inverse frequency. The divisors depend on the parameters only through original/low and
// original/high (scaling all three by k changes nothing), so with `original` fixed, factor (the
// largest divisor), low and high follow from the divisors; the recovered parameters must then
// reproduce every divisor, or the tensor is not Llama 3 scaling and is rejected.
nlohmann::json llama3_from_rope_freqs(const GgufFile& f, double theta, std::int64_t head_dim, std::int64_t original) {
  const std::string file = f.path().string(), name = "rope_freqs.weight";
  const GgufTensorInfo& t = f.tensor(name);
  if (t.shape() != std::vector<std::int64_t>{head_dim / 2})
    throw ConfigError(file, name, "has shape " + shape_string(t.shape()) + ", RoPE with head_dim " + std::to_string(head_dim) +
                                      " needs [" + std::to_string(head_dim / 2) + "]");
  const std::vector<float> div = f.read_f32(name);
  const std::size_t half = div.size();
  std::vector<double> inv(half);
  for (std::size_t i = 0; i < half; ++i) inv[i] = std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(head_dim));
  for (float d : div)
    if (!(d >= 1.0f - 1e-6f) || !std::isfinite(d))  // 1 within float rounding
      throw ConfigError(file, name, "holds " + std::to_string(d) + "; Llama 3 divisors are finite and at least 1");
  const double factor = *std::max_element(div.begin(), div.end());
  if (factor <= 1.0 + 1e-6) return nullptr;  // every divisor 1: plain RoPE
  auto close = [](double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(1.0, std::abs(b)); };

  // Inverse frequencies fall with i: high frequencies (divisor 1) first, low (divisor factor) last.
  std::vector<std::size_t> smooth;
  for (std::size_t i = 0; i < half; ++i)
    if (!close(div[i], 1.0) && !close(div[i], factor)) smooth.push_back(i);
  const double two_pi = 2 * std::numbers::pi;
  const double orig = static_cast<double>(original);
  double low = 1.0, high = 4.0;
  if (smooth.size() >= 2) {
    // smooth = (orig * inv / 2pi - low) / (high - low), and 1/divisor = (1 - smooth) / factor + smooth.
    auto s = [&](std::size_t i) { return (1.0 / div[i] - 1.0 / factor) / (1.0 - 1.0 / factor); };
    const std::size_t a = smooth.front(), b = smooth.back();
    const double slope = (s(b) - s(a)) / (inv[b] - inv[a]);
    const double span = orig / (two_pi * slope);
    low = -(s(a) - slope * inv[a]) * span;
    high = low + span;
  } else if (smooth.size() == 1) {
    // One interpolated frequency m fixes where its x = orig * inv / 2pi falls between low and high,
    // not how far apart they are: take the widest span that keeps its neighbours outside [low, high]
    // (divisor 1 above, factor below); every such span gives the same divisors.
    auto x = [&](std::size_t i) { return orig * inv[i] / two_pi; };
    const std::size_t m = smooth.front();
    const double s = (1.0 / div[m] - 1.0 / factor) / (1.0 - 1.0 / factor);
    double span = x(m);
    if (m > 0) span = std::min(span, (x(m - 1) - x(m)) / (1.0 - s));
    if (m + 1 < half) span = std::min(span, (x(m) - x(m + 1)) / s);
    low = x(m) - s * span;
    high = low + span;
  } else {
    // No interpolated frequency: low at the highest frequency divided by factor, high at the lowest
    // left alone.
    std::size_t first_low = half;
    for (std::size_t i = 0; i < half; ++i)
      if (close(div[i], factor)) { first_low = i; break; }
    low = orig * inv[first_low] / two_pi;
    high = first_low > 0 ? orig * inv[first_low - 1] / two_pi : 4.0 * low;
  }
  if (!(low > 0) || !(high > low) || !std::isfinite(high))
    throw ConfigError(file, name, "its divisors do not follow Llama 3 RoPE scaling (no positive low_freq_factor < high_freq_factor fits)");
  for (std::size_t i = 0; i < half; ++i) {
    const double want = llama3_divisor(inv[i], factor, low, high, orig);
    if (std::abs(want - div[i]) > 1e-5 * want)
      throw ConfigError(file, name, "divisor " + std::to_string(i) + " is " + std::to_string(div[i]) +
                                        ", Llama 3 RoPE scaling fitted to the others (factor " + std::to_string(factor) +
                                        ") gives " + std::to_string(want) + ": not a scaling the engine can run");
  }
  return {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", low}, {"high_freq_factor", high},
          {"original_max_position_embeddings", original}};
}

}  // namespace

bool is_gguf_path(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (ext == ".gguf") return true;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::string gguf_tensor_name(const std::string& hf) {
  static const std::vector<std::pair<std::string, std::string>> layer = {
      {"input_layernorm.weight", "attn_norm.weight"},        {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},              {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.k_proj.bias", "attn_k.bias"},              {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.v_proj.bias", "attn_v.bias"},              {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},     {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},               {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::regex re(R"(model\.layers\.(\d+)\.(.+))");
  std::smatch m;
  if (!std::regex_match(hf, m, re)) return "";
  for (const auto& [from, to] : layer)
    if (m[2] == from) return "blk." + m[1].str() + "." + to;
  return "";
}

ModelConfig gguf_engine_config(const GgufFile& f) {
  const std::string file = f.path().string();
  const std::string arch = f.string("general.architecture");
  if (arch != "llama")
    throw ConfigError(file, "general.architecture", "is '" + arch + "'; the engine reads GGUF files of architecture 'llama'");
  const std::string p = "llama.";
  const std::int64_t layers = positive(f, p + "block_count");
  const std::int64_t hidden = positive(f, p + "embedding_length");
  const std::int64_t ffn = positive(f, p + "feed_forward_length");
  const std::int64_t heads = positive(f, p + "attention.head_count");
  const std::int64_t kv_heads = f.has(p + "attention.head_count_kv") ? positive(f, p + "attention.head_count_kv") : heads;

  // As llama.cpp: the head size is attention.key_length, else embedding_length / head_count; RoPE
  // covers rope.dimension_count of it (all of it here: partial rotary is not supported).
  std::int64_t head_dim = 0;
  std::string head_dim_key = p + "attention.key_length";
  if (f.has(head_dim_key)) {
    head_dim = positive(f, head_dim_key);
  } else if (f.has(p + "rope.dimension_count")) {
    head_dim_key = p + "rope.dimension_count";
    head_dim = positive(f, head_dim_key);
  } else {
    head_dim_key = p + "embedding_length";
    if (hidden % heads != 0)
      throw ConfigError(file, p + "attention.head_count", "does not divide embedding_length " + std::to_string(hidden) +
                                                              " and attention.key_length is absent");
    head_dim = hidden / heads;
  }
  if (f.has(p + "attention.value_length") && positive(f, p + "attention.value_length") != head_dim)
    throw ConfigError(file, p + "attention.value_length", "differs from the key head size " + std::to_string(head_dim) +
                                                              " (" + head_dim_key + "); the engine needs them equal");
  if (f.has(p + "rope.dimension_count") && positive(f, p + "rope.dimension_count") != head_dim)
    throw ConfigError(file, p + "rope.dimension_count", "is " + std::to_string(f.integer(p + "rope.dimension_count")) +
                                                            ", not the head size " + std::to_string(head_dim) +
                                                            ": partial rotary embeddings are not supported");

  std::int64_t vocab = 0;
  if (f.has(p + "vocab_size")) vocab = positive(f, p + "vocab_size");
  else if (f.has("tokenizer.ggml.tokens")) vocab = static_cast<std::int64_t>(f.strings("tokenizer.ggml.tokens").size());
  else if (f.has_tensor("token_embd.weight") && f.tensor("token_embd.weight").dims.size() == 2)
    vocab = f.tensor("token_embd.weight").dims[1];
  else throw ConfigError(file, p + "vocab_size", "missing, and neither tokenizer.ggml.tokens nor token_embd.weight gives it");

  const std::string eps_key = p + "attention.layer_norm_rms_epsilon";
  nlohmann::json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", hidden},
      {"intermediate_size", ffn},
      {"num_hidden_layers", layers},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv_heads},
      {"head_dim", head_dim},
      {"vocab_size", vocab},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"rms_norm_eps", f.number(eps_key)},
      // llama.cpp's converter writes output.weight only when the LM head is not the embedding.
      {"tie_word_embeddings", !f.has_tensor("output.weight")},
  };
  if (f.has(p + "context_length")) j["max_position_embeddings"] = positive(f, p + "context_length");
  const double theta = f.has(p + "rope.freq_base") ? f.number(p + "rope.freq_base") : 10000.0;
  j["rope_theta"] = theta;
  if (f.has("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = f.integer("tokenizer.ggml.eos_token_id");

  const std::string type_key = p + "rope.scaling.type";
  const std::string type = f.has(type_key) ? f.string(type_key) : "none";
  const std::int64_t original = f.has(p + "rope.scaling.original_context_length")
                                    ? positive(f, p + "rope.scaling.original_context_length")
                                    : (f.has(p + "context_length") ? positive(f, p + "context_length") : 8192);
  const bool has_freqs = f.has_tensor("rope_freqs.weight");
  if (has_freqs && type != "none")
    throw ConfigError(file, type_key, "is '" + type + "' and rope_freqs.weight (Llama 3 scaling) is present too");
  if (type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f.number(p + "rope.scaling.factor")}};
  } else if (type == "yarn") {
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", f.number(p + "rope.scaling.factor")},
                         {"original_max_position_embeddings", original}};
  } else if (type != "none") {
    throw ConfigError(file, type_key, "is '" + type + "'; the engine runs none, linear and yarn (and Llama 3 via rope_freqs.weight)");
  } else if (has_freqs) {
    nlohmann::json llama3 = llama3_from_rope_freqs(f, theta, head_dim, original);
    if (!llama3.is_null()) j["rope_scaling"] = std::move(llama3);
  }

  ModelConfig c = parse_engine_config(j, file);
  c.shape.name = f.path().stem().string();
  return c;
}

ModelWeights gguf_weights(const ModelConfig& c, const GgufFile& f) {
  const std::string file = f.path().string();
  const std::vector<ExpectedTensor> expected = expected_tensors(c);
  std::set<std::string> used = {"rope_freqs.weight"};  // read by gguf_engine_config
  // Every check runs before any data is read, so a mismatched file fails at once.
  for (const auto& e : expected) {
    const std::string name = gguf_tensor_name(e.name);
    if (name.empty()) throw ConfigError(file, e.name, "has no llama.cpp tensor name the engine knows");
    if (!f.has_tensor(name))
      throw ConfigError(file, name, "missing: the metadata implies it (" + e.name + ", shape " + shape_string(e.shape) + ")");
    const GgufTensorInfo& t = f.tensor(name);
    if (t.shape() != e.shape)
      throw ConfigError(file, name, "has shape " + shape_string(t.shape()) + " (GGUF dims " + shape_string(t.dims) +
                                        ") but the metadata implies " + shape_string(e.shape) + " (" + e.name + ")");
    if (!gguf_type_readable(t.type))
      throw ConfigError(file, name, "has tensor type " + ggml_type_name(t.type) + " (id " + std::to_string(t.type) +
                                        "), which the engine cannot dequantise (it reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1)");
    used.insert(name);
  }
  for (const auto& t : f.tensors())
    if (!used.count(t.name))
      throw ConfigError(file, t.name, "is not implied by the metadata (" + std::to_string(c.shape.layers) +
                                          " llama layers): the metadata does not match the tensors");

  // convert_hf_to_gguf.py reorders each head's q/k rows from rotate_half pairs (i, i + d/2) to
  // GGML's adjacent pairs (2i, 2i + 1): w.reshape(heads, 2, d/2, in).swapaxes(1, 2). Undone here:
  // Hugging Face row h*d + t*(d/2) + j is GGUF row h*d + 2j + t.
  const std::int64_t d = c.shape.head_dim, half = d / 2;
  auto unpermute = [&](const std::vector<float>& in, std::int64_t heads, std::int64_t cols) {
    std::vector<float> out(in.size());
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t t = 0; t < 2; ++t)
        for (std::int64_t j = 0; j < half; ++j)
          std::copy_n(in.begin() + (h * d + 2 * j + t) * cols, cols, out.begin() + (h * d + t * half + j) * cols);
    return out;
  };
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return build_weights(c, [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    std::vector<float> values = f.read_f32(gguf_tensor_name(name));
    if (ends_with(name, "self_attn.q_proj.weight")) return unpermute(values, c.shape.q_heads, shape[1]);
    if (ends_with(name, "self_attn.k_proj.weight")) return unpermute(values, c.shape.kv_heads, shape[1]);
    return values;
  });
}

}  // namespace specontext
