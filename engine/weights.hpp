#pragma once
// The weights of a decoder-only model in fp32 on the host (the CPU reference's form), the
// list of tensors a config implies (Hugging Face names and shapes), and their loading with
// every tensor's presence, dtype and shape checked.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/model_config.hpp"
#include "engine/safetensors.hpp"

namespace specontext {

// Row-major [rows, cols]; a Linear's weight is [out_features, in_features] as in PyTorch.
struct Matrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> data;
};

struct LayerWeights {
  std::vector<float> input_norm, post_attention_norm;  // [hidden]
  Matrix q, k, v, o;                                  // q: [q_heads*head_dim, hidden], o: [hidden, q_heads*head_dim]
  std::vector<float> q_bias, k_bias, v_bias;          // Qwen2: [out]; empty otherwise
  std::vector<float> q_norm, k_norm;                  // Qwen3: [head_dim]; empty otherwise
  Matrix gate, up, down;                              // gate/up: [ffn, hidden], down: [hidden, ffn]
};

struct ModelWeights {
  Matrix embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  Matrix lm_head;                 // [vocab, hidden]; empty when tied to embed
  const Matrix& output() const { return lm_head.data.empty() ? embed : lm_head; }
};

struct ExpectedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
};
// Every tensor the config implies, in Hugging Face naming (model.layers.N.self_attn.q_proj.weight, ...).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c);

// Loads and checks: a missing tensor, a wrong shape or an unsupported dtype is an error naming
// the tensor and the file; tensors the config does not imply are an error too (a config that
// does not match its weights).
ModelWeights load_weights(const ModelConfig& c, const Checkpoint& ckpt);

// Fills every tensor the config implies from `read(name, shape)`, which returns the tensor's
// values (row-major, shape's product of them) under its Hugging Face name: the one walk over the
// tensors that other formats (GGUF) reuse.
ModelWeights build_weights(const ModelConfig& c,
                           const std::function<std::vector<float>(const std::string& name, const std::vector<std::int64_t>& shape)>& read);

// n normal samples by Box-Muller over splitmix64: unlike std::normal_distribution, the same on every
// standard library. Each tensor has its own stream keyed by its name, so a tensor's values do not
// depend on which other tensors the config implies.
std::vector<float> normal_values(std::uint64_t seed, const std::string& name, std::int64_t n, double mean, double stddev);

// Seeded random weights (normal with std 0.02, norms 1 + small noise), for tests and for
// saving fixture checkpoints.
ModelWeights random_weights(const ModelConfig& c, std::uint64_t seed);

// The weights as safetensors tensors in Hugging Face naming, in the given dtype.
std::vector<TensorToWrite> to_safetensors(const ModelConfig& c, const ModelWeights& w, DType dtype);

}  // namespace specontext
