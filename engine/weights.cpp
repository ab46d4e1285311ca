#include "engine/weights.hpp"

#include <bit>
#include <cmath>
#include <regex>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "sim/config_error.hpp"

namespace specontext {
namespace {

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

[[noreturn]] void tensor_error(const std::filesystem::path& where, const std::string& tensor, const std::string& what) {
  throw ConfigError(where.string() + ": tensor '" + tensor + "'", "", what);
}

const std::vector<float>& values(const Matrix& m) { return m.data; }
const std::vector<float>& values(const std::vector<float>& v) { return v; }

// Calls f(name, shape, target) for every tensor the config implies, in Hugging Face naming and in
// checkpoint order; target is the Matrix or vector of `w` that holds it. The one list of tensors:
// expected_tensors, load_weights, random_weights and to_safetensors all walk it.
template <class W, class F>
void for_each_tensor(const ModelConfig& c, W& w, F&& f) {
  const ModelShape& s = c.shape;
  if (s.kv_lora_rank > 0) throw ConfigError(c.origin, "kv_lora_rank", "MLA weights are not supported by the engine");
  if (s.eagle3_draft) throw ConfigError(c.origin, "architectures", "EAGLE-3 draft weights are not a target model's");
  const std::int64_t h = s.hidden, q = s.q_heads * s.head_dim, kv = s.kv_heads * s.head_dim, ffn = s.ffn;
  if constexpr (std::is_const_v<W>) {
    if (static_cast<long long>(w.layers.size()) != s.layers)
      throw std::invalid_argument("weights hold " + std::to_string(w.layers.size()) + " layers, the config " +
                                  c.origin + " has " + std::to_string(s.layers));
  } else {
    w.layers.resize(static_cast<std::size_t>(s.layers));
  }

  f("model.embed_tokens.weight", {s.vocab, h}, w.embed);
  for (long long i = 0; i < s.layers; ++i) {
    auto& L = w.layers[static_cast<std::size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    f(p + "input_layernorm.weight", {h}, L.input_norm);
    f(p + "self_attn.q_proj.weight", {q, h}, L.q);
    if (s.attention_bias) f(p + "self_attn.q_proj.bias", {q}, L.q_bias);
    f(p + "self_attn.k_proj.weight", {kv, h}, L.k);
    if (s.attention_bias) f(p + "self_attn.k_proj.bias", {kv}, L.k_bias);
    f(p + "self_attn.v_proj.weight", {kv, h}, L.v);
    if (s.attention_bias) f(p + "self_attn.v_proj.bias", {kv}, L.v_bias);
    f(p + "self_attn.o_proj.weight", {h, q}, L.o);
    if (s.qk_norm) {
      f(p + "self_attn.q_norm.weight", {s.head_dim}, L.q_norm);
      f(p + "self_attn.k_norm.weight", {s.head_dim}, L.k_norm);
    }
    f(p + "post_attention_layernorm.weight", {h}, L.post_attention_norm);
    f(p + "mlp.gate_proj.weight", {ffn, h}, L.gate);
    f(p + "mlp.up_proj.weight", {ffn, h}, L.up);
    f(p + "mlp.down_proj.weight", {h, ffn}, L.down);
  }
  f("model.norm.weight", {h}, w.final_norm);
  if (!s.tied_embeddings) f("lm_head.weight", {s.vocab, h}, w.lm_head);
}

void assign(Matrix& m, const std::vector<std::int64_t>& shape, std::vector<float> data) {
  m.rows = shape[0];
  m.cols = shape[1];
  m.data = std::move(data);
}
void assign(std::vector<float>& v, const std::vector<std::int64_t>&, std::vector<float> data) { v = std::move(data); }

bool is_norm(const std::string& name) { return name.ends_with("norm.weight"); }

// Old Llama checkpoints saved RoPE's inverse frequencies as buffers; the engine derives them from
// the config, so they are neither needed nor a sign of a mismatched config.
bool is_rope_buffer(const std::string& name) {
  static const std::regex re(R"(model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq)");
  return std::regex_match(name, re);
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001B3ull;
  return h;
}

// fp32 -> fp16, round to nearest even, with subnormals, overflow to inf and NaN kept quiet.
std::uint16_t f32_to_f16(float f) {
  const auto x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  const int exp = static_cast<int>(a >> 23) - 127 + 15;
  if (exp >= 1) {
    std::uint32_t h = static_cast<std::uint32_t>(exp) << 10 | ((a & 0x7FFFFFu) >> 13);
    const std::uint32_t rest = a & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  if (a <= 0x33000000u) return sign;  // at most 2^-25: rounds to (signed) zero
  const std::uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
  const int shift = 14 - exp;  // value in units of 2^-24 is mant >> shift
  std::uint32_t h = mant >> shift;
  const std::uint32_t rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

}  // namespace

std::vector<float> normal_values(std::uint64_t seed, const std::string& name, std::int64_t n, double mean, double stddev) {
  std::uint64_t state = seed ^ fnv1a(name);
  splitmix64(state);
  std::vector<float> out(static_cast<std::size_t>(n));
  constexpr double kTwoPi = 6.283185307179586476925;
  for (std::int64_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[static_cast<std::size_t>(i)] = static_cast<float>(mean + stddev * r * std::cos(kTwoPi * u2));
    if (i + 1 < n) out[static_cast<std::size_t>(i + 1)] = static_cast<float>(mean + stddev * r * std::sin(kTwoPi * u2));
  }
  return out;
}


std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  ModelWeights scratch;
  for_each_tensor(c, scratch, [&](const std::string& name, const std::vector<std::int64_t>& shape, auto&) {
    out.push_back({name, shape});
  });
  return out;
}

ModelWeights load_weights(const ModelConfig& c, const Checkpoint& ckpt) {
  const std::vector<ExpectedTensor> expected = expected_tensors(c);
  std::set<std::string> expected_names;
  // Every check runs before any data is read, so a mismatched checkpoint fails at once.
  for (const auto& e : expected) {
    expected_names.insert(e.name);
    if (!ckpt.has(e.name)) {
      std::string hint;
      if (e.name == "lm_head.weight") hint = " (is tie_word_embeddings missing from the config?)";
      if (e.name.ends_with("_proj.bias")) hint = " (the config implies attention_bias)";
      tensor_error(ckpt.dir(), e.name, "missing: the config " + c.origin + " implies it with shape " +
                                           shape_string(e.shape) + hint);
    }
    const TensorInfo& t = ckpt.info(e.name);
    if (t.shape != e.shape)
      tensor_error(t.file, e.name, "has shape " + shape_string(t.shape) + " but the config " + c.origin + " implies " +
                                       shape_string(e.shape));
    if (!is_readable_float(t.dtype))
      tensor_error(t.file, e.name, std::string("has dtype ") + to_string(t.dtype) + "; weights must be F32, F16 or BF16");
  }
  bool tied_lm_head = false;
  for (const auto& name : ckpt.names()) {
    if (expected_names.count(name) || is_rope_buffer(name)) continue;
    const TensorInfo& t = ckpt.info(name);
    if (name == "lm_head.weight" && c.shape.tied_embeddings) {
      // Some tied checkpoints store the LM head anyway; accepted only when it is the embedding.
      if (t.shape != std::vector<std::int64_t>{c.shape.vocab, c.shape.hidden})
        tensor_error(t.file, name, "has shape " + shape_string(t.shape) + " and the config " + c.origin +
                                       " ties it to model.embed_tokens.weight");
      tied_lm_head = true;
      continue;
    }
    tensor_error(t.file, name, "is not implied by the config " + c.origin + " (" + c.shape.architecture + ", " +
                                   std::to_string(c.shape.layers) + " layers): the config does not match the weights");
  }

  ModelWeights w = build_weights(c, [&](const std::string& name, const std::vector<std::int64_t>&) { return ckpt.read_f32(name); });
  if (tied_lm_head && ckpt.read_f32("lm_head.weight") != w.embed.data)
    tensor_error(ckpt.info("lm_head.weight").file, "lm_head.weight",
                 "differs from model.embed_tokens.weight but the config " + c.origin +
                     " sets tie_word_embeddings: the config does not match the weights");
  return w;
}

ModelWeights build_weights(const ModelConfig& c,
                           const std::function<std::vector<float>(const std::string& name, const std::vector<std::int64_t>& shape)>& read) {
  ModelWeights w;
  for_each_tensor(c, w, [&](const std::string& name, const std::vector<std::int64_t>& shape, auto& target) {
    std::vector<float> values = read(name, shape);
    if (static_cast<std::int64_t>(values.size()) != product(shape))
      throw std::invalid_argument("tensor '" + name + "': " + std::to_string(values.size()) + " values read, shape " + shape_string(shape) +
                                  " needs " + std::to_string(product(shape)));
    assign(target, shape, std::move(values));
  });
  return w;
}

ModelWeights random_weights(const ModelConfig& c, std::uint64_t seed) {
  return build_weights(c, [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    return normal_values(seed, name, product(shape), is_norm(name) ? 1.0 : 0.0, 0.02);
  });
}

std::vector<TensorToWrite> to_safetensors(const ModelConfig& c, const ModelWeights& w, DType dtype) {
  if (!is_readable_float(dtype))
    throw std::invalid_argument(std::string("to_safetensors: weights are written as F32, F16 or BF16, not ") + to_string(dtype));
  std::vector<TensorToWrite> out;
  for_each_tensor(c, w, [&](const std::string& name, const std::vector<std::int64_t>& shape, const auto& target) {
    const std::vector<float>& v = values(target);
    if (static_cast<std::int64_t>(v.size()) != product(shape))
      throw std::invalid_argument("tensor '" + name + "' holds " + std::to_string(v.size()) + " values, the config " +
                                  c.origin + " implies shape " + shape_string(shape));
    TensorToWrite t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.bytes.resize(v.size() * dtype_bytes(dtype));
    std::uint8_t* p = t.bytes.data();
    for (float x : v) {
      std::uint32_t bits = 0;
      int n = 2;
      switch (dtype) {
        case DType::F32: bits = std::bit_cast<std::uint32_t>(x); n = 4; break;
        case DType::F16: bits = f32_to_f16(x); break;
        case DType::BF16: bits = f32_to_bf16(x); break;
        default: break;  // rejected above
      }
      for (int b = 0; b < n; ++b) *p++ = static_cast<std::uint8_t>(bits >> (8 * b));
    }
    out.push_back(std::move(t));
  });
  return out;
}

}  // namespace specontext
