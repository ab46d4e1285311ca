// Tests of engine/eagle3_draft: loading the retrieval head's part of an EAGLE-3 draft (only those
// tensors, any float dtype, sharded or not, beside int64/bool vocabulary maps), its config's
// defaults, and bad input — a missing tensor, a wrong shape or dtype, a draft that does not fit its
// target, a pytorch_model.bin-only folder — with messages naming the tensor, file and field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "engine/eagle3_draft.hpp"
#include "engine/rope.hpp"
#include "tests/expect_config_error.hpp"
#include "tests/temp_dir.hpp"
#include "tests/tiny_eagle3.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::expect_config_error;
using testing::expect_config_error_naming;
using testing::TempDir;

struct TinyDraft {
  Eagle3DraftConfig config;
  Eagle3DraftWeights weights;
};

TinyDraft tiny(const json& draft = testing::tiny_draft_json(), bool with_embedding = false) {
  TinyDraft d;
  d.config = parse_eagle3_draft_config(draft, "tiny-draft.json", testing::tiny_target());
  d.weights = testing::random_draft_weights(d.config, 7, with_embedding);
  return d;
}

void expect_same(const Matrix& a, const Matrix& b, float tolerance = 0.0f) {
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  ASSERT_EQ(a.data.size(), b.data.size());
  for (std::size_t i = 0; i < a.data.size(); ++i) ASSERT_NEAR(a.data[i], b.data[i], tolerance) << i;
}

TEST(Eagle3Draft, ConfigDefaults) {
  const Eagle3DraftConfig c = parse_eagle3_draft_config(testing::tiny_draft_json(), "tiny-draft.json", testing::tiny_target());
  EXPECT_EQ(c.layer.shape.head_dim, 8);  // hidden / heads
  EXPECT_EQ(c.layer.shape.kv_heads, 2);
  EXPECT_EQ(c.target_hidden, 32);
  EXPECT_EQ(c.draft_vocab, 20);
  EXPECT_EQ(c.aux_layers, (std::vector<int>{2, 4, 5}));  // [2, L/2, L-3] for 8 target layers
  EXPECT_DOUBLE_EQ(c.layer.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.layer.rope.theta, 10000.0);

  json j = testing::tiny_draft_json();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 100000.0}};  // transformers 5
  j["eagle_aux_hidden_state_layer_ids"] = {7, 0, 3};
  j["head_dim"] = 16;
  const Eagle3DraftConfig c5 = parse_eagle3_draft_config(j, "tiny-draft.json", testing::tiny_target());
  EXPECT_DOUBLE_EQ(c5.layer.rope.theta, 100000.0);
  EXPECT_EQ(c5.aux_layers, (std::vector<int>{7, 0, 3}));
  EXPECT_EQ(c5.layer.shape.head_dim, 16);
}

// A context past the draft's max_position_embeddings switches its RoPE to YaRN, the same as a config
// that names rope_scaling yarn with that factor (whose frequencies tests/test_rope.cpp checks against
// transformers); within the trained length, or with a scaling of its own, nothing changes.
TEST(Eagle3Draft, YarnExtendsTheDraftPastItsTrainedContext) {
  Eagle3DraftConfig c = parse_eagle3_draft_config(testing::tiny_draft_json(), "tiny-draft.json", testing::tiny_target());
  const std::vector<float> native = rope_inverse_frequencies(c.layer);
  EXPECT_FALSE(extend_draft_context(c, 256));
  EXPECT_EQ(rope_inverse_frequencies(c.layer), native);
  ASSERT_TRUE(extend_draft_context(c, 1024));
  json j = testing::tiny_draft_json();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 256}};
  const Eagle3DraftConfig named = parse_eagle3_draft_config(j, "tiny-draft.json", testing::tiny_target());
  EXPECT_EQ(rope_inverse_frequencies(c.layer), rope_inverse_frequencies(named.layer));
  EXPECT_NE(rope_inverse_frequencies(c.layer), native);
  EXPECT_FLOAT_EQ(rope_attention_factor(c.layer), static_cast<float>(0.1 * std::log(4.0) + 1.0));
  EXPECT_EQ(c.layer.shape.max_positions, 1024);
  EXPECT_FALSE(extend_draft_context(c, 4096)) << "a draft with a scaling of its own keeps it";
}

TEST(Eagle3Draft, ArchitectureNames) {
  for (const char* arch : {"LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM", "LlamaForCausalLM"}) {
    json j = testing::tiny_draft_json();
    j["architectures"] = {arch};
    EXPECT_NO_THROW(parse_eagle3_draft_config(j, "tiny-draft.json", testing::tiny_target())) << arch;
  }
  // A plain Llama config (no draft_vocab_size) is a target, not a draft.
  json llama = testing::tiny_draft_json();
  llama["architectures"] = {"LlamaForCausalLM"};
  llama.erase("draft_vocab_size");
  expect_config_error([&] { parse_eagle3_draft_config(llama, "tiny-draft.json", testing::tiny_target()); }, "tiny-draft.json",
                      "architectures");
  json qwen = llama;
  qwen["architectures"] = {"Qwen3ForCausalLM"};
  expect_config_error([&] { parse_eagle3_draft_config(qwen, "tiny-draft.json", testing::tiny_target()); }, "tiny-draft.json",
                      "architectures");
}

TEST(Eagle3Draft, IncompatibleTargetNamesTheField) {
  auto parse = [](const json& draft, const ModelConfig& target) { return [=] { parse_eagle3_draft_config(draft, "tiny-draft.json", target); }; };
  const json draft = testing::tiny_draft_json();
  // KV heads: head-level selection maps draft KV head h to target KV head h.
  expect_config_error(parse(draft, testing::tiny_target({{"num_key_value_heads", 1}})), "tiny-draft.json", "num_key_value_heads");
  expect_config_error_naming(parse(draft, testing::tiny_target({{"num_key_value_heads", 4}})), {"tiny-target.json", "KV head h"});
  // The features are the target's hidden states.
  expect_config_error(parse(draft, testing::tiny_target({{"hidden_size", 64}})), "tiny-draft.json", "target_hidden_size");
  json wide = draft;
  wide["target_hidden_size"] = 64;
  expect_config_error(parse(wide, testing::tiny_target()), "tiny-draft.json", "target_hidden_size");
  expect_config_error(parse(draft, testing::tiny_target({{"vocab_size", 60}})), "tiny-draft.json", "vocab_size");
  // Aux layers must exist in the target; the default needs at least 4 target layers.
  json aux = draft;
  aux["eagle_aux_hidden_state_layer_ids"] = {2, 8, 5};
  expect_config_error_naming(parse(aux, testing::tiny_target()), {"eagle_aux_hidden_state_layer_ids", "layer 8", "8 layers"});
  expect_config_error_naming(parse(draft, testing::tiny_target({{"num_hidden_layers", 2}})),
                             {"eagle_aux_hidden_state_layer_ids", "absent", "layer 2", "2 layers"});
  json bias = draft;
  bias["attention_bias"] = true;
  expect_config_error(parse(bias, testing::tiny_target()), "tiny-draft.json", "attention_bias");
}

TEST(Eagle3Draft, LoadsOnlyTheRetrievalHeadFromAFullDraft) {
  TempDir tmp;
  const TinyDraft d = tiny();
  const ModelConfig target = testing::tiny_target();
  const fs::path f32_dir = testing::write_draft(tmp.path() / "f32", testing::tiny_draft_json(),
                                                testing::draft_tensors(d.config, d.weights, DType::F32));
  const Eagle3Draft loaded = load_eagle3_draft(f32_dir, target);
  EXPECT_EQ(loaded.config.aux_layers, d.config.aux_layers);
  EXPECT_EQ(loaded.config.layer.origin, (f32_dir / "config.json").string());
  expect_same(loaded.weights.fc, d.weights.fc);
  expect_same(loaded.weights.q, d.weights.q);
  expect_same(loaded.weights.k, d.weights.k);
  EXPECT_EQ(loaded.weights.hidden_norm, d.weights.hidden_norm);
  EXPECT_EQ(loaded.weights.input_norm, d.weights.input_norm);
  EXPECT_TRUE(loaded.weights.embed.data.empty());  // the target's is used

  // bf16 (as released drafts are) converts to fp32: within bf16's rounding.
  const fs::path bf16_dir = testing::write_draft(tmp.path() / "bf16", testing::tiny_draft_json(),
                                                 testing::draft_tensors(d.config, d.weights, DType::BF16));
  const Eagle3Draft bf16 = load_eagle3_draft(bf16_dir, target);
  expect_same(bf16.weights.q, d.weights.q, 4e-3f);
  EXPECT_EQ(bf16.weights.q.data[3], bf16_to_f32(f32_to_bf16(d.weights.q.data[3])));

  // A draft that ships its own embedding keeps it.
  const TinyDraft e = tiny(testing::tiny_draft_json(), true);
  const fs::path embed_dir = testing::write_draft(tmp.path() / "embed", testing::tiny_draft_json(),
                                                  testing::draft_tensors(e.config, e.weights, DType::F32));
  expect_same(load_eagle3_draft(embed_dir, target).weights.embed, e.weights.embed);
}

TEST(Eagle3Draft, LoadsShardedCheckpoints) {
  TempDir tmp;
  const TinyDraft d = tiny();
  auto tensors = testing::draft_tensors(d.config, d.weights, DType::F32);
  const fs::path dir = tmp.path() / "sharded";
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << testing::tiny_draft_json().dump();
  const auto half = static_cast<std::ptrdiff_t>(tensors.size() / 2);
  write_safetensors(dir / "model-00001-of-00002.safetensors", {tensors.begin(), tensors.begin() + half});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {tensors.begin() + half, tensors.end()});
  json map = json::object();
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(tensors.size()); ++i)
    map[tensors[i].name] = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", map}}.dump();
  const Eagle3Draft loaded = load_eagle3_draft(dir, testing::tiny_target());
  expect_same(loaded.weights.k, d.weights.k);
  expect_same(loaded.weights.fc, d.weights.fc);
}

TEST(Eagle3Draft, BadTensorsNameTheTensorAndFile) {
  TempDir tmp;
  const TinyDraft d = tiny();
  const ModelConfig target = testing::tiny_target();
  const auto good = testing::draft_tensors(d.config, d.weights, DType::F32);
  auto with = [&](const std::string& dir, const std::function<void(std::vector<TensorToWrite>&)>& change) {
    auto tensors = good;
    change(tensors);
    return testing::write_draft(tmp.path() / dir, testing::tiny_draft_json(), tensors);
  };

  const fs::path missing = with("missing", [](auto& t) {
    std::erase_if(t, [](const TensorToWrite& x) { return x.name == "midlayer.self_attn.k_proj.weight"; });
  });
  expect_config_error_naming([&] { load_eagle3_draft(missing, target); },
                             {missing.string(), "'midlayer.self_attn.k_proj.weight'", "missing", "[16, 64]"});

  const fs::path shape = with("shape", [](auto& t) {
    for (auto& x : t)
      if (x.name == "midlayer.self_attn.q_proj.weight") std::swap(x.shape[0], x.shape[1]);
  });
  expect_config_error_naming([&] { load_eagle3_draft(shape, target); },
                             {(shape / "model.safetensors").string(), "'midlayer.self_attn.q_proj.weight'", "[64, 32]", "[32, 64]"});

  // fc reading two features instead of three: the config's aux layers fix its width.
  const fs::path fc = with("fc", [&](auto& t) {
    for (auto& x : t)
      if (x.name == "fc.weight") x = testing::f32_tensor("fc.weight", {32, 64}, std::vector<float>(32 * 64));
  });
  expect_config_error_naming([&] { load_eagle3_draft(fc, target); }, {(fc / "model.safetensors").string(), "'fc.weight'", "[32, 96]"});

  const fs::path dtype = with("dtype", [](auto& t) {
    for (auto& x : t)
      if (x.name == "midlayer.hidden_norm.weight") x.dtype = DType::I32;  // same bytes, read as int32
  });
  expect_config_error_naming([&] { load_eagle3_draft(dtype, target); },
                             {(dtype / "model.safetensors").string(), "'midlayer.hidden_norm.weight'", "I32"});

  const fs::path embed = with("embed", [](auto& t) { t.push_back(testing::f32_tensor("embed_tokens.weight", {50, 16}, std::vector<float>(800))); });
  expect_config_error_naming([&] { load_eagle3_draft(embed, target); }, {"'embed_tokens.weight'", "[50, 16]", "[50, 32]"});
}

TEST(Eagle3Draft, DraftWithoutEmbeddingNeedsTheTargetsWidth) {
  TempDir tmp;
  json j = testing::tiny_draft_json();
  j["hidden_size"] = 16;
  j["target_hidden_size"] = 32;
  j["num_attention_heads"] = 2;  // head_dim 8 again
  j["num_key_value_heads"] = 2;
  const ModelConfig target = testing::tiny_target();
  const TinyDraft d = tiny(j);
  const fs::path dir = testing::write_draft(tmp.path() / "narrow", j, testing::draft_tensors(d.config, d.weights, DType::F32));
  expect_config_error([&] { load_eagle3_draft(dir, target); }, (dir / "config.json").string(), "hidden_size");
  // With its own embedding it loads.
  const TinyDraft e = tiny(j, true);
  const fs::path own = testing::write_draft(tmp.path() / "own", j, testing::draft_tensors(e.config, e.weights, DType::F32));
  EXPECT_EQ(load_eagle3_draft(own, target).weights.embed.cols, 16);
}

TEST(Eagle3Draft, BadFoldersSayWhatIsWrong) {
  TempDir tmp;
  const ModelConfig target = testing::tiny_target();
  expect_config_error_naming([&] { load_eagle3_draft(tmp.path() / "nope", target); }, {(tmp.path() / "nope").string(), "no such"});

  const fs::path bin = tmp.path() / "bin";
  fs::create_directories(bin);
  std::ofstream(bin / "config.json") << testing::tiny_draft_json().dump();
  std::ofstream(bin / "pytorch_model.bin") << "not read";
  expect_config_error_naming([&] { load_eagle3_draft(bin, target); }, {bin.string(), "pytorch_model.bin", "safetensors"});

  const fs::path no_config = tmp.path() / "no-config";
  fs::create_directories(no_config);
  expect_config_error_naming([&] { load_eagle3_draft(no_config, target); }, {(no_config / "config.json").string(), "missing"});

  // A target's checkpoint given as the draft.
  const fs::path llama = tmp.path() / "llama";
  fs::create_directories(llama);
  std::ofstream(llama / "config.json") << testing::tiny_target_json().dump();
  expect_config_error([&] { load_eagle3_draft(llama, target); }, (llama / "config.json").string(), "architectures");
}

// The project's draft of SmolLM2 (committed): bf16 with int64/bool vocabulary maps beside the weights.
TEST(Eagle3Draft, LoadsTheSmolLM2Draft) {
  const fs::path dir = testing::smollm2_draft_dir();
  // SmolLM2-135M-Instruct's shape (what gguf_engine_config reads from its GGUF), without needing the GGUF.
  const ModelConfig target = testing::tiny_target({{"hidden_size", 576}, {"intermediate_size", 1536}, {"num_attention_heads", 9},
                                                   {"num_key_value_heads", 3}, {"num_hidden_layers", 30}, {"vocab_size", 49152},
                                                   {"max_position_embeddings", 8192}});
  const Eagle3Draft d = load_eagle3_draft(dir, target);
  EXPECT_EQ(d.config.aux_layers, (std::vector<int>{2, 15, 27}));
  EXPECT_EQ(d.config.layer.shape.head_dim, 64);
  EXPECT_DOUBLE_EQ(d.config.layer.rope.theta, 100000.0);
  EXPECT_EQ(d.weights.fc.rows, 576);
  EXPECT_EQ(d.weights.fc.cols, 1728);
  EXPECT_EQ(d.weights.q.rows, 576);
  EXPECT_EQ(d.weights.q.cols, 1152);
  EXPECT_EQ(d.weights.k.rows, 192);
  EXPECT_TRUE(d.weights.embed.data.empty());
  EXPECT_TRUE(std::all_of(d.weights.k.data.begin(), d.weights.k.data.end(), [](float x) { return std::isfinite(x); }));
}

}  // namespace
}  // namespace specontext
