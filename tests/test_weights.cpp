// Tests of engine/weights: the tensor list a config implies (checked against the shipped 8B
// configs), seeded random weights, and load_weights round trips through safetensors files with
// checks that name the tensor and the file when config and weights disagree.
#include <gtest/gtest.h>

#include "tests/temp_dir.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model_config.hpp"
#include "engine/safetensors.hpp"
#include "engine/weights.hpp"
#include "sim/config_error.hpp"
#include "tests/expect_config_error.hpp"

using namespace specontext;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(SPECONTEXT_CONFIGS_DIR) / "models";

using specontext::testing::expect_config_error_naming;
using specontext::testing::TempDir;


// Tiny configs of each supported kind: GQA Llama, Qwen2 with QKV bias, Qwen3 with q/k norms and
// a head_dim that is not hidden/heads, and tied embeddings.
json tiny(const std::string& arch) {
  json j = {{"architectures", {arch}},     {"hidden_size", 32},       {"intermediate_size", 48},
            {"num_attention_heads", 4},    {"num_hidden_layers", 2},  {"num_key_value_heads", 2},
            {"vocab_size", 50},            {"rms_norm_eps", 1e-6},    {"max_position_embeddings", 256}};
  if (arch == "Qwen3ForCausalLM") j["head_dim"] = 16;
  return j;
}

ModelConfig config(const std::string& arch, bool tied = false) {
  json j = tiny(arch);
  if (tied) j["tie_word_embeddings"] = true;
  return parse_engine_config(j, "tiny-" + arch + ".json");
}

fs::path save(const fs::path& dir, const std::vector<TensorToWrite>& tensors) {
  fs::create_directories(dir);
  write_safetensors(dir / "model.safetensors", tensors);
  return dir;
}

std::vector<std::pair<std::string, const std::vector<float>*>> all_values(const ModelWeights& w) {
  std::vector<std::pair<std::string, const std::vector<float>*>> out = {{"embed", &w.embed.data}, {"final_norm", &w.final_norm},
                                                                        {"lm_head", &w.lm_head.data}};
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    const auto& L = w.layers[i];
    const std::string p = std::to_string(i) + ".";
    for (const auto& [name, v] : std::vector<std::pair<std::string, const std::vector<float>*>>{
             {"input_norm", &L.input_norm}, {"post_norm", &L.post_attention_norm}, {"q", &L.q.data}, {"k", &L.k.data},
             {"v", &L.v.data}, {"o", &L.o.data}, {"q_bias", &L.q_bias}, {"k_bias", &L.k_bias}, {"v_bias", &L.v_bias},
             {"q_norm", &L.q_norm}, {"k_norm", &L.k_norm}, {"gate", &L.gate.data}, {"up", &L.up.data}, {"down", &L.down.data}})
      out.emplace_back(p + name, v);
  }
  return out;
}

void expect_same_weights(const ModelWeights& a, const ModelWeights& b, const std::function<float(float)>& through) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  const auto va = all_values(a), vb = all_values(b);
  for (std::size_t i = 0; i < va.size(); ++i) {
    ASSERT_EQ(va[i].second->size(), vb[i].second->size()) << va[i].first;
    for (std::size_t k = 0; k < va[i].second->size(); ++k)
      ASSERT_EQ(through((*va[i].second)[k]), (*vb[i].second)[k]) << va[i].first << "[" << k << "]";
  }
}

std::size_t count_with(const std::vector<ExpectedTensor>& ts, const std::string& part) {
  return static_cast<std::size_t>(std::count_if(ts.begin(), ts.end(), [&](const auto& t) { return t.name.find(part) != std::string::npos; }));
}

}  // namespace

TEST(Weights, ExpectedTensorsOfShippedLlama31_8B) {
  const auto ts = expected_tensors(load_engine_config(kModels / "llama-3.1-8b.json"));
  ASSERT_EQ(ts.size(), 291u);  // embed + 32 layers x 9 + final norm + LM head
  using S = std::vector<std::int64_t>;
  EXPECT_EQ(ts.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(ts.front().shape, (S{128256, 4096}));
  EXPECT_EQ(ts[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(ts[1].shape, (S{4096}));
  EXPECT_EQ(ts[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(ts[2].shape, (S{4096, 4096}));
  EXPECT_EQ(ts[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(ts[3].shape, (S{1024, 4096}));
  EXPECT_EQ(ts[4].shape, (S{1024, 4096}));
  EXPECT_EQ(ts[5].name, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(ts[6].name, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(ts[7].name, "model.layers.0.mlp.gate_proj.weight");
  EXPECT_EQ(ts[7].shape, (S{14336, 4096}));
  EXPECT_EQ(ts[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(ts[9].shape, (S{4096, 14336}));
  EXPECT_EQ(ts[288].name, "model.layers.31.mlp.down_proj.weight");
  EXPECT_EQ(ts[289].name, "model.norm.weight");
  EXPECT_EQ(ts[290].name, "lm_head.weight");
  EXPECT_EQ(ts[290].shape, (S{128256, 4096}));
  EXPECT_EQ(count_with(ts, "bias"), 0u);
  EXPECT_EQ(count_with(ts, "q_norm"), 0u);
}

TEST(Weights, ExpectedTensorsOfShippedQwen3_8B) {
  const ModelConfig c = load_engine_config(kModels / "qwen3-8b.json");
  const auto ts = expected_tensors(c);
  ASSERT_EQ(ts.size(), 1u + 36u * 11u + 1u + 1u);  // Llama's 9 per layer plus q_norm and k_norm
  EXPECT_EQ(count_with(ts, "self_attn.q_norm.weight"), 36u);
  EXPECT_EQ(count_with(ts, "self_attn.k_norm.weight"), 36u);
  const auto qn = std::find_if(ts.begin(), ts.end(), [](const auto& t) { return t.name == "model.layers.0.self_attn.q_norm.weight"; });
  ASSERT_NE(qn, ts.end());
  EXPECT_EQ(qn->shape, (std::vector<std::int64_t>{128}));
  EXPECT_EQ(ts[2].shape, (std::vector<std::int64_t>{4096, 4096}));  // 32 heads x 128
  // Parameter count agrees with the simulator's.
  double params = 0;
  for (const auto& t : ts) {
    double n = 1;
    for (auto d : t.shape) n *= static_cast<double>(d);
    params += n;
  }
  EXPECT_DOUBLE_EQ(params, c.shape.total_params());
}

TEST(Weights, ExpectedTensorsOfBiasAndTiedConfigs) {
  const auto qwen2 = expected_tensors(config("Qwen2ForCausalLM"));
  EXPECT_EQ(qwen2.size(), 1u + 2u * 12u + 1u + 1u);
  EXPECT_EQ(count_with(qwen2, "_proj.bias"), 6u);
  EXPECT_EQ(qwen2[3].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(qwen2[3].shape, (std::vector<std::int64_t>{32}));
  EXPECT_EQ(qwen2[5].name, "model.layers.0.self_attn.k_proj.bias");
  EXPECT_EQ(qwen2[5].shape, (std::vector<std::int64_t>{16}));
  const auto tied = expected_tensors(config("LlamaForCausalLM", true));
  EXPECT_EQ(tied.size(), 1u + 2u * 9u + 1u);
  EXPECT_EQ(count_with(tied, "lm_head"), 0u);
}

TEST(Weights, RandomWeightsAreSeededAndShaped) {
  const ModelConfig c = config("Qwen3ForCausalLM");
  const ModelWeights a = random_weights(c, 7), b = random_weights(c, 7), other = random_weights(c, 8);
  expect_same_weights(a, b, [](float x) { return x; });
  EXPECT_NE(a.embed.data, other.embed.data);
  ASSERT_EQ(a.layers.size(), 2u);
  EXPECT_EQ(a.embed.rows, 50);
  EXPECT_EQ(a.embed.cols, 32);
  EXPECT_EQ(a.layers[0].q.rows, 64);  // 4 heads x head_dim 16
  EXPECT_EQ(a.layers[0].q.cols, 32);
  EXPECT_EQ(a.layers[0].o.rows, 32);
  EXPECT_EQ(a.layers[0].o.cols, 64);
  EXPECT_EQ(a.layers[1].k.rows, 32);
  EXPECT_EQ(a.layers[1].down.rows, 32);
  EXPECT_EQ(a.layers[1].down.cols, 48);
  EXPECT_EQ(a.layers[0].q_norm.size(), 16u);
  EXPECT_TRUE(a.layers[0].q_bias.empty());
  EXPECT_NE(a.layers[0].q.data, a.layers[1].q.data);
  EXPECT_EQ(&a.output(), &a.lm_head);

  // Matrices ~ N(0, 0.02); norms ~ 1 + N(0, 0.02).
  auto stats = [](const std::vector<float>& v) {
    double s = 0, s2 = 0;
    for (float x : v) s += x, s2 += static_cast<double>(x) * x;
    const double mean = s / static_cast<double>(v.size());
    return std::pair{mean, std::sqrt(s2 / static_cast<double>(v.size()) - mean * mean)};
  };
  const auto [m_mean, m_std] = stats(a.layers[0].gate.data);  // 1536 values
  EXPECT_NEAR(m_mean, 0.0, 0.003);
  EXPECT_NEAR(m_std, 0.02, 0.002);
  std::vector<float> norms;
  for (const auto& L : a.layers) norms.insert(norms.end(), L.input_norm.begin(), L.input_norm.end());
  const auto [n_mean, n_std] = stats(norms);
  EXPECT_NEAR(n_mean, 1.0, 0.01);
  EXPECT_NEAR(n_std, 0.02, 0.006);

  const ModelWeights tied = random_weights(config("LlamaForCausalLM", true), 7);
  EXPECT_TRUE(tied.lm_head.data.empty());
  EXPECT_EQ(&tied.output(), &tied.embed);
  const ModelWeights qwen2 = random_weights(config("Qwen2ForCausalLM"), 7);
  EXPECT_EQ(qwen2.layers[1].v_bias.size(), 16u);
}

TEST(Weights, RoundTripThroughSafetensorsForEachConfig) {
  TempDir tmp;
  for (const auto& [arch, tied] : std::vector<std::pair<std::string, bool>>{
           {"LlamaForCausalLM", false}, {"Qwen2ForCausalLM", false}, {"Qwen3ForCausalLM", false},
           {"MistralForCausalLM", true}, {"LlamaForCausalLM", true}}) {
    SCOPED_TRACE(arch + (tied ? " tied" : ""));
    const ModelConfig c = config(arch, tied);
    const ModelWeights w = random_weights(c, 42);
    const auto dir = save(tmp.path() / (arch + (tied ? "-tied" : "") + "-f32"), to_safetensors(c, w, DType::F32));
    const ModelWeights loaded = load_weights(c, Checkpoint::open(dir));
    expect_same_weights(w, loaded, [](float x) { return x; });
    EXPECT_EQ(loaded.layers[1].q.rows, w.layers[1].q.rows);
    EXPECT_EQ(loaded.lm_head.rows, w.lm_head.rows);
  }
}

TEST(Weights, RoundTripInBf16AndF16) {
  TempDir tmp;
  const ModelConfig c = config("Qwen2ForCausalLM");
  const ModelWeights w = random_weights(c, 3);

  const auto bf16_dir = save(tmp.path() / "bf16", to_safetensors(c, w, DType::BF16));
  const Checkpoint bf16 = Checkpoint::open(bf16_dir);
  EXPECT_EQ(bf16.info("model.layers.0.mlp.up_proj.weight").dtype, DType::BF16);
  expect_same_weights(w, load_weights(c, bf16), [](float x) { return bf16_to_f32(f32_to_bf16(x)); });

  const auto f16_dir = save(tmp.path() / "f16", to_safetensors(c, w, DType::F16));
  const Checkpoint f16 = Checkpoint::open(f16_dir);
  EXPECT_EQ(f16.info("model.embed_tokens.weight").dtype, DType::F16);
  const ModelWeights loaded = load_weights(c, f16);
  const auto va = all_values(w), vb = all_values(loaded);
  for (std::size_t i = 0; i < va.size(); ++i)
    for (std::size_t k = 0; k < va[i].second->size(); ++k) {
      const float x = (*va[i].second)[k], y = (*vb[i].second)[k];
      // fp16 keeps 11 significant bits; below 2^-14 its spacing is 2^-24.
      ASSERT_LE(std::fabs(x - y), std::max(std::fabs(x) * 0x1p-11f, 0x1p-25f)) << va[i].first << "[" << k << "]";
    }
}

TEST(Weights, ShardedCheckpointLoads) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM");
  const ModelWeights w = random_weights(c, 5);
  const auto tensors = to_safetensors(c, w, DType::F32);
  const std::size_t half = tensors.size() / 2;
  json map;
  const std::vector<TensorToWrite> first(tensors.begin(), tensors.begin() + static_cast<std::ptrdiff_t>(half));
  const std::vector<TensorToWrite> second(tensors.begin() + static_cast<std::ptrdiff_t>(half), tensors.end());
  write_safetensors(tmp.path() / "model-00001-of-00002.safetensors", first);
  write_safetensors(tmp.path() / "model-00002-of-00002.safetensors", second);
  for (const auto& t : first) map[t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : second) map[t.name] = "model-00002-of-00002.safetensors";
  std::ofstream(tmp.path() / "model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", map}}.dump();
  expect_same_weights(w, load_weights(c, Checkpoint::open(tmp.path())), [](float x) { return x; });
}

TEST(Weights, WrongShapeNamesTheTensorAndFile) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM");
  auto tensors = to_safetensors(c, random_weights(c, 1), DType::F32);
  // Same bytes, transposed shape: only the shape check can catch it.
  for (auto& t : tensors)
    if (t.name == "model.layers.1.self_attn.k_proj.weight") std::swap(t.shape[0], t.shape[1]);
  const auto dir = save(tmp.path() / "ckpt", tensors);
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(dir)); },
                      {(dir / "model.safetensors").string(), "'model.layers.1.self_attn.k_proj.weight'", "[32, 16]", "[16, 32]"});
}

TEST(Weights, IntegerWeightNamesTheTensorFileAndDtype) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM");
  auto tensors = to_safetensors(c, random_weights(c, 1), DType::F32);
  // Same bytes and shape, read as int32: only the dtype check can catch it.
  for (auto& t : tensors)
    if (t.name == "model.norm.weight") t.dtype = DType::I32;
  const auto dir = save(tmp.path() / "ckpt", tensors);
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(dir)); },
                      {(dir / "model.safetensors").string(), "'model.norm.weight'", "I32"});
  EXPECT_THROW(to_safetensors(c, random_weights(c, 1), DType::I64), std::invalid_argument);
}

TEST(Weights, MissingTensorNamesTheTensorAndFolder) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM");
  auto tensors = to_safetensors(c, random_weights(c, 1), DType::BF16);
  std::erase_if(tensors, [](const auto& t) { return t.name == "model.layers.0.mlp.up_proj.weight"; });
  const auto dir = save(tmp.path() / "ckpt", tensors);
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(dir)); },
                      {dir.string(), "'model.layers.0.mlp.up_proj.weight'", "missing", c.origin});

  // A Qwen2 config over Llama weights: the config implies biases the checkpoint lacks.
  const ModelConfig qwen2 = config("Qwen2ForCausalLM");
  const auto llama_dir = save(tmp.path() / "llama", to_safetensors(c, random_weights(c, 1), DType::F32));
  expect_config_error_naming([&] { load_weights(qwen2, Checkpoint::open(llama_dir)); },
                      {llama_dir.string(), "'model.layers.0.self_attn.q_proj.bias'", "missing"});
  // An untied config over tied weights: the LM head is missing.
  const ModelConfig tied = config("LlamaForCausalLM", true);
  const auto tied_dir = save(tmp.path() / "tied", to_safetensors(tied, random_weights(tied, 1), DType::F32));
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(tied_dir)); }, {tied_dir.string(), "'lm_head.weight'", "tie_word_embeddings"});
}

TEST(Weights, UnknownExtraTensorNamesTheTensorAndFile) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM");
  auto tensors = to_safetensors(c, random_weights(c, 1), DType::F32);
  TensorToWrite extra = tensors[1];  // a third layer's norm: the config says two layers
  extra.name = "model.layers.2.input_layernorm.weight";
  tensors.push_back(extra);
  const auto dir = save(tmp.path() / "ckpt", tensors);
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(dir)); },
                      {(dir / "model.safetensors").string(), "'model.layers.2.input_layernorm.weight'", "not implied"});

  // Llama config over Qwen2 weights: the biases are extra.
  const ModelConfig qwen2 = config("Qwen2ForCausalLM");
  const auto qwen2_dir = save(tmp.path() / "qwen2", to_safetensors(qwen2, random_weights(qwen2, 1), DType::F32));
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(qwen2_dir)); }, {"_proj.bias'", "not implied"});
}

TEST(Weights, TiedCheckpointMayCarryItsEmbeddingAsLmHead) {
  TempDir tmp;
  const ModelConfig c = config("LlamaForCausalLM", true);
  const ModelWeights w = random_weights(c, 9);
  auto tensors = to_safetensors(c, w, DType::BF16);
  TensorToWrite head = tensors.front();  // model.embed_tokens.weight
  head.name = "lm_head.weight";
  tensors.push_back(head);
  // Old Llama checkpoints carry RoPE buffers; they are derived from the config and skipped.
  tensors.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::F32, {4}, std::vector<std::uint8_t>(16)});
  const auto dir = save(tmp.path() / "same", tensors);
  const ModelWeights loaded = load_weights(c, Checkpoint::open(dir));
  EXPECT_TRUE(loaded.lm_head.data.empty());
  EXPECT_EQ(&loaded.output(), &loaded.embed);

  // A different LM head contradicts tie_word_embeddings.
  tensors[tensors.size() - 2].bytes[0] ^= 1;
  const auto bad = save(tmp.path() / "different", tensors);
  expect_config_error_naming([&] { load_weights(c, Checkpoint::open(bad)); },
                      {(bad / "model.safetensors").string(), "'lm_head.weight'", "tie_word_embeddings"});
}

TEST(Weights, ToSafetensorsRejectsWeightsOfAnotherShape) {
  const ModelConfig c = config("LlamaForCausalLM");
  ModelWeights w = random_weights(c, 1);
  w.layers[0].k.data.pop_back();
  EXPECT_THROW(to_safetensors(c, w, DType::F32), std::invalid_argument);
  w.layers.pop_back();
  EXPECT_THROW(to_safetensors(c, w, DType::F32), std::invalid_argument);
}
