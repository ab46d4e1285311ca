// Tests of engine/model_config: the shipped configs' RoPE, epsilon and EOS ids; RoPE scaling
// types and their required fields; architectures the engine refuses; loading from a folder.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model_config.hpp"
#include "sim/config_error.hpp"
#include "tests/expect_config_error.hpp"

using namespace specontext;
using nlohmann::json;
using specontext::testing::expect_config_error;

namespace {

const std::filesystem::path kModels = std::filesystem::path(SPECONTEXT_CONFIGS_DIR) / "models";
const char* kOrigin = "engine-config.json";

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("specontext-engine-config-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_json(const std::filesystem::path& p, const json& j) { std::ofstream(p) << j.dump(2); }

// A small Llama-3-like config, written here so that edits to configs/ cannot hide parser changes.
json tiny_llama() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"hidden_size", 64},
              {"intermediate_size", 128},
              {"num_attention_heads", 4},
              {"num_hidden_layers", 2},
              {"num_key_value_heads", 2},
              {"vocab_size", 100},
              {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0},
              {"eos_token_id", 7}};
}

}  // namespace

TEST(EngineConfig, ShippedLlama31HasLlama3RopeAndThreeEosIds) {
  const ModelConfig c = load_engine_config(kModels / "llama-3.1-8b.json");
  EXPECT_EQ(c.shape.layers, 32);
  EXPECT_EQ(c.shape.kv_heads, 8);
  EXPECT_EQ(c.shape.name, "llama-3.1-8b");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_positions, 8192);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_NE(c.origin.find("llama-3.1-8b.json"), std::string::npos);
}

TEST(EngineConfig, ShippedQwen3HasNoScalingAndOneEosId) {
  const ModelConfig c = load_engine_config(kModels / "qwen3-8b.json");
  EXPECT_TRUE(c.shape.qk_norm);
  EXPECT_EQ(c.shape.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1000000.0);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{151645}));
}

TEST(EngineConfig, DefaultsAndEosForms) {
  json j = tiny_llama();
  j.erase("rope_theta");
  j.erase("eos_token_id");
  ModelConfig c = parse_engine_config(j, kOrigin);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.origin, kOrigin);

  j["eos_token_id"] = json::array({1, 2});
  EXPECT_EQ(parse_engine_config(j, kOrigin).eos_token_ids, (std::vector<int>{1, 2}));
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(parse_engine_config(j, kOrigin).eos_token_ids.empty());
  j["eos_token_id"] = "</s>";
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "eos_token_id");
  j["eos_token_id"] = 100;  // == vocab_size
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "eos_token_id");
}

TEST(EngineConfig, RopeScalingTypes) {
  json j = tiny_llama();
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_engine_config(j, kOrigin).rope.scaling, RopeScaling::None);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse_engine_config(j, kOrigin).rope.scaling, RopeScaling::None);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // the older "type" key
  ModelConfig c = parse_engine_config(j, kOrigin);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Linear);
  EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1024}};
  c = parse_engine_config(j, kOrigin);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Yarn);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_EQ(c.rope.original_max_positions, 1024);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1.0);

  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 16}, {"beta_slow", 2}};
  c = parse_engine_config(j, kOrigin);  // as transformers: max_position_embeddings stands in
  EXPECT_EQ(c.rope.original_max_positions, 4096);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 2.0);
}

TEST(EngineConfig, RopeScalingMissingOrUnsupportedFieldsNameRopeScaling) {
  json j = tiny_llama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};  // no low_freq_factor
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  try {
    parse_engine_config(j, kOrigin);
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("low_freq_factor"), std::string::npos) << e.what();
  }
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = {{"rope_type", "linear"}};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = {{"rope_type", "yarn"}};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};  // the simulator knows it, the engine does not
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}, {"mscale", 0.7}};  // would be silently ignored
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1.0}};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_scaling");
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = 0;
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rope_theta");
}

TEST(EngineConfig, RmsNormEpsIsRequired) {
  json j = tiny_llama();
  j.erase("rms_norm_eps");
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rms_norm_eps");
  j["rms_norm_eps"] = "1e-5";
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "rms_norm_eps");
}

TEST(EngineConfig, ArchitecturesTheEngineCannotRun) {
  json j = tiny_llama();
  for (const char* arch : {"MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    j["architectures"] = {arch};
    EXPECT_EQ(parse_engine_config(j, kOrigin).shape.architecture, arch);
  }
  // Known to the simulator, not runnable by the engine.
  j["architectures"] = {"DeepseekV2ForCausalLM"};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "architectures");
  j["architectures"] = {"GPT2LMHeadModel"};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "architectures");

  // MLA fields on a Llama architecture.
  j = tiny_llama();
  j["kv_lora_rank"] = 16;
  j["qk_rope_head_dim"] = 8;
  j["qk_nope_head_dim"] = 8;
  j["v_head_dim"] = 16;
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "kv_lora_rank");

  // The shipped EAGLE-3 draft (LlamaForCausalLM with draft_vocab_size) is not a target.
  const auto draft = kModels / "eagle3-llama-3.1-8b.json";
  expect_config_error([&] { load_engine_config(draft); }, draft.string(), "draft_vocab_size");
  j = tiny_llama();
  j["architectures"] = {"LlamaForCausalLMEagle3"};
  j["num_hidden_layers"] = 1;
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "architectures");
}

TEST(EngineConfig, FieldsThatChangeTheOutputAreChecked) {
  json j = tiny_llama();
  j["hidden_act"] = "gelu";
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "hidden_act");
  j = tiny_llama();
  j["architectures"] = {"MistralForCausalLM"};
  j["sliding_window"] = 1024;
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "sliding_window");
  j["sliding_window"] = nullptr;  // Mistral 7B v0.2 and later
  EXPECT_NO_THROW(parse_engine_config(j, kOrigin));
  j["layer_types"] = {"full_attention", "sliding_attention"};
  expect_config_error([&] { parse_engine_config(j, kOrigin); }, kOrigin, "layer_types");
}

TEST(EngineConfig, LoadsFromAFolderOrAFile) {
  TempDir tmp;
  const auto dir = tmp.path() / "tiny-llama";
  std::filesystem::create_directories(dir);
  write_json(dir / "config.json", tiny_llama());

  const ModelConfig from_dir = load_engine_config(dir);
  EXPECT_EQ(from_dir.origin, (dir / "config.json").string());
  EXPECT_EQ(from_dir.shape.name, "tiny-llama");
  EXPECT_EQ(from_dir.eos_token_ids, (std::vector<int>{7}));
  EXPECT_EQ(load_engine_config(dir / "config.json").shape.name, "tiny-llama");

  write_json(tmp.path() / "other.json", tiny_llama());
  EXPECT_EQ(load_engine_config(tmp.path() / "other.json").shape.name, "other");
}

TEST(EngineConfig, MissingFolderOrConfigNamesThePath) {
  TempDir tmp;
  const auto missing = tmp.path() / "no-such-model";
  try {
    load_engine_config(missing);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  const auto empty = tmp.path() / "empty";
  std::filesystem::create_directories(empty);
  try {
    load_engine_config(empty);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find((empty / "config.json").string()), std::string::npos) << e.what();
  }
  std::ofstream(empty / "config.json") << "{\"architectures\": [";
  EXPECT_THROW(load_engine_config(empty), ConfigError);
}
