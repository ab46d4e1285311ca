#pragma once
// A tiny target config and an EAGLE-3 draft of it (hidden 32, 4 query / 2 KV heads of 8, vocab 50,
// 8 target layers), with seeded random weights, in memory or as the files a released draft has:
// the retrieval head's tensors plus the ones it leaves on disk (V, O, MLP, norms, LM head, and the
// int64/bool vocabulary maps d2t/t2d).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/eagle3_draft.hpp"
#include "engine/model_config.hpp"
#include "engine/safetensors.hpp"

namespace specontext::testing {

inline nlohmann::json tiny_target_json() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_attention_heads", 4},
          {"num_hidden_layers", 8}, {"num_key_value_heads", 2}, {"vocab_size", 50}, {"rms_norm_eps", 1e-6},
          {"max_position_embeddings", 256}};
}

inline ModelConfig tiny_target(const nlohmann::json& overrides = nlohmann::json::object()) {
  nlohmann::json j = tiny_target_json();
  j.update(overrides);
  return parse_engine_config(j, "tiny-target.json");
}

inline nlohmann::json tiny_draft_json() {
  return {{"architectures", {"LlamaForCausalLMEagle3"}}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_attention_heads", 4},
          {"num_hidden_layers", 1}, {"num_key_value_heads", 2}, {"vocab_size", 50}, {"draft_vocab_size", 20},
          {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"max_position_embeddings", 256}};
}

inline std::vector<float> random_values(std::size_t n, std::uint32_t seed, float mean, float stddev) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(gen);
  return v;
}

inline Matrix random_matrix(std::int64_t rows, std::int64_t cols, std::uint32_t seed, float stddev = 0.2f) {
  return {rows, cols, random_values(static_cast<std::size_t>(rows * cols), seed, 0.0f, stddev)};
}

// The retrieval head's weights at the config's shapes; norms near 1.
inline Eagle3DraftWeights random_draft_weights(const Eagle3DraftConfig& c, std::uint32_t seed, bool with_embedding = false) {
  const ModelShape& s = c.layer.shape;
  const std::int64_t h = s.hidden;
  Eagle3DraftWeights w;
  w.fc = random_matrix(h, static_cast<std::int64_t>(c.aux_layers.size()) * c.target_hidden, seed + 1, 0.1f);
  w.hidden_norm = random_values(static_cast<std::size_t>(h), seed + 2, 1.0f, 0.1f);
  w.input_norm = random_values(static_cast<std::size_t>(h), seed + 3, 1.0f, 0.1f);
  w.q = random_matrix(s.q_heads * s.head_dim, 2 * h, seed + 4);
  w.k = random_matrix(s.kv_heads * s.head_dim, 2 * h, seed + 5);
  if (with_embedding) w.embed = random_matrix(s.vocab, h, seed + 6, 1.0f);
  return w;
}

inline TensorToWrite f32_tensor(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& v) {
  TensorToWrite t{name, DType::F32, std::move(shape), std::vector<std::uint8_t>(v.size() * 4)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());  // the test hosts are little-endian
  return t;
}

inline TensorToWrite bf16_tensor(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& v) {
  TensorToWrite t{name, DType::BF16, std::move(shape), std::vector<std::uint8_t>(v.size() * 2)};
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::uint16_t b = f32_to_bf16(v[i]);
    t.bytes[2 * i] = static_cast<std::uint8_t>(b);
    t.bytes[2 * i + 1] = static_cast<std::uint8_t>(b >> 8);
  }
  return t;
}

// Every tensor of a full EAGLE-3 draft with these weights, in `dtype` (F32 or BF16): the head's, the
// rest of the decoder layer, the final norm, the LM head and the vocabulary maps.
inline std::vector<TensorToWrite> draft_tensors(const Eagle3DraftConfig& c, const Eagle3DraftWeights& w, DType dtype) {
  const ModelShape& s = c.layer.shape;
  const std::int64_t h = s.hidden, kv = s.kv_heads * s.head_dim;
  auto tensor = [&](const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& v) {
    return dtype == DType::BF16 ? bf16_tensor(name, std::move(shape), v) : f32_tensor(name, std::move(shape), v);
  };
  auto matrix = [&](const std::string& name, const Matrix& m) { return tensor(name, {m.rows, m.cols}, m.data); };
  std::vector<TensorToWrite> out = {
      matrix("fc.weight", w.fc),
      tensor("midlayer.hidden_norm.weight", {h}, w.hidden_norm),
      tensor("midlayer.input_layernorm.weight", {h}, w.input_norm),
      matrix("midlayer.self_attn.q_proj.weight", w.q),
      matrix("midlayer.self_attn.k_proj.weight", w.k),
      matrix("midlayer.self_attn.v_proj.weight", random_matrix(kv, 2 * h, 11)),
      matrix("midlayer.self_attn.o_proj.weight", random_matrix(h, s.q_heads * s.head_dim, 12)),
      tensor("midlayer.post_attention_layernorm.weight", {h}, std::vector<float>(static_cast<std::size_t>(h), 1.0f)),
      matrix("midlayer.mlp.gate_proj.weight", random_matrix(s.ffn, h, 13)),
      matrix("midlayer.mlp.up_proj.weight", random_matrix(s.ffn, h, 14)),
      matrix("midlayer.mlp.down_proj.weight", random_matrix(h, s.ffn, 15)),
      tensor("norm.weight", {h}, std::vector<float>(static_cast<std::size_t>(h), 1.0f)),
      matrix("lm_head.weight", random_matrix(c.draft_vocab, h, 16)),
      TensorToWrite{"d2t", DType::I64, {c.draft_vocab}, std::vector<std::uint8_t>(static_cast<std::size_t>(c.draft_vocab) * 8)},
      TensorToWrite{"t2d", DType::BOOL, {s.vocab}, std::vector<std::uint8_t>(static_cast<std::size_t>(s.vocab))},
  };
  if (!w.embed.data.empty()) out.push_back(matrix("embed_tokens.weight", w.embed));
  return out;
}

// A draft folder: config.json and model.safetensors.
inline std::filesystem::path write_draft(const std::filesystem::path& dir, const nlohmann::json& config,
                                         const std::vector<TensorToWrite>& tensors) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  return dir;
}

}  // namespace specontext::testing
