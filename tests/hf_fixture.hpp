#pragma once
// The golden fixtures: tiny seeded checkpoints saved by Hugging Face transformers with the
// logits and greedy tokens transformers computed for them (tests/fixtures/<name>/, made by
// tests/fixtures/make_fixtures.py on the H200).
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model_config.hpp"
#include "engine/safetensors.hpp"
#include "engine/weights.hpp"

namespace specontext::testing {

inline const std::vector<std::string>& hf_fixture_names() {
  static const std::vector<std::string> names = {"llama-gqa", "qwen3-qknorm", "mha", "mqa"};
  return names;
}

inline std::filesystem::path hf_fixture_dir(const std::string& name) {
  return std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / name;
}

struct HfFixture {
  ModelConfig config;
  ModelWeights weights;
  std::vector<std::vector<int>> prompts;
  std::vector<std::vector<int>> positions;             // per prompt, the positions whose logits are stored
  std::vector<std::vector<std::vector<float>>> logits;  // per prompt, per stored position, [vocab]
  std::vector<std::vector<int>> greedy;                // per prompt, HF's greedy tokens
};

inline HfFixture load_hf_fixture(const std::string& name) {
  const auto dir = hf_fixture_dir(name);
  HfFixture f;
  f.config = load_engine_config(dir);
  f.weights = load_weights(f.config, Checkpoint::open(dir));
  std::ifstream in(dir / "expected.json");
  const nlohmann::json e = nlohmann::json::parse(in);
  f.prompts = e.at("prompts").get<std::vector<std::vector<int>>>();
  f.positions = e.at("logit_positions").get<std::vector<std::vector<int>>>();
  f.logits = e.at("logits").get<std::vector<std::vector<std::vector<float>>>>();
  f.greedy = e.at("greedy").get<std::vector<std::vector<int>>>();
  return f;
}

// The llama-gqa fixture's config and weights, loaded once per test binary (tests that only need a
// small real model, not its expected numbers).
struct TinyModel {
  ModelConfig config;
  ModelWeights weights;
};

inline const TinyModel& tiny_llama_gqa() {
  static const TinyModel m = [] {
    const auto dir = hf_fixture_dir("llama-gqa");
    TinyModel t;
    t.config = load_engine_config(dir);
    t.weights = load_weights(t.config, Checkpoint::open(dir));
    return t;
  }();
  return m;
}

// n token ids below llama-gqa's vocabulary (512), seeded.
inline std::vector<int> random_tokens(std::uint32_t seed, int n) {
  std::mt19937 rng(seed);
  std::vector<int> t(static_cast<std::size_t>(n));
  for (int& x : t) x = static_cast<int>(rng() % 512);
  return t;
}

}  // namespace specontext::testing
