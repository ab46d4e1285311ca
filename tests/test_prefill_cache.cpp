// Tests of the CPU reference's prefill cache (engine/prefill_cache.hpp) on a tiny random model: a
// restored prompt decodes exactly as a computed one (logits, cache, features), entries are keyed by
// the prompt and the model, an entry without features does not serve a backend that captures them,
// and a damaged entry is an error naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_backend.hpp"
#include "engine/model_config.hpp"
#include "engine/prefill_cache.hpp"
#include "engine/weights.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;

ModelConfig tiny_config() {
  return parse_engine_config({{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 32}, {"intermediate_size", 48},
                              {"num_attention_heads", 4}, {"num_hidden_layers", 3}, {"num_key_value_heads", 2},
                              {"vocab_size", 50}, {"rms_norm_eps", 1e-6}, {"max_position_embeddings", 64}},
                             "tiny-prefill-cache.json");
}

const std::vector<int> kPrompt = {3, 17, 42, 8, 8, 25, 1, 49, 30};

class PrefillCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("specontext-prefill-cache-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<fs::path> entries() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path());
    return out;
  }
  // The tiny model with seed `seed` weights and 2 requests, capturing `features`, over `cache`
  // (nullptr: none).
  std::unique_ptr<CpuBackend> backend(std::shared_ptr<PrefillCache> cache, std::vector<int> features = {}, std::uint64_t seed = 1) const {
    auto cpu = std::make_unique<CpuBackend>(config_, random_weights(config_, seed), 2, 64);
    if (!features.empty()) cpu->set_feature_layers(std::move(features));
    if (cache) cpu->set_prefill_cache(std::move(cache));
    return cpu;
  }
  std::shared_ptr<PrefillCache> cache(std::uint64_t key = 7) const { return std::make_shared<PrefillCache>(dir_, key); }
  fs::path dir_;
  ModelConfig config_ = tiny_config();
};

// Prefill then two decode steps of request 1 (beside request 0, which decodes too): the logits of
// every call, concatenated.
std::vector<float> run(CpuBackend& cpu) {
  std::vector<float> all = cpu.prefill(1, kPrompt);
  cpu.prefill(0, {4, 5});
  for (int token : {11, 12}) {
    const std::vector<float> step = cpu.decode({0, 1}, {7, token});
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

TEST_F(PrefillCacheTest, ARestoredPromptDecodesExactlyAsAComputedOne) {
  const std::vector<float> expected = run(*backend(nullptr, {0, 2}));
  auto c = cache();
  EXPECT_EQ(run(*backend(c, {0, 2})), expected);
  EXPECT_EQ(c->hits(), 0);
  EXPECT_EQ(c->misses(), 2);  // both prompts were prefilled and stored
  EXPECT_EQ(entries().size(), 2u);

  auto second = backend(c, {0, 2});
  second->prefill(1, kPrompt);
  EXPECT_EQ(c->hits(), 1);
  auto fresh = backend(nullptr, {0, 2});
  fresh->prefill(1, kPrompt);
  EXPECT_EQ(second->features(1), fresh->features(1));
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(second->cached_keys(1, l), fresh->cached_keys(1, l)) << l;
    EXPECT_EQ(second->cached_values(1, l), fresh->cached_values(1, l)) << l;
  }
  second->reset(1);
  EXPECT_EQ(run(*second), expected);
  EXPECT_EQ(c->hits(), 3);
}

TEST_F(PrefillCacheTest, RestoresTheFeaturesOfThePrompt) {
  auto c = cache();
  auto first = backend(c, {1});
  first->prefill(0, kPrompt);
  const std::vector<float> computed = first->features(0);
  ASSERT_EQ(computed.size(), kPrompt.size() * 32);
  auto second = backend(c, {1});
  second->prefill(0, kPrompt);
  EXPECT_EQ(c->hits(), 1);
  EXPECT_EQ(second->features(0), computed);

  // A backend that captures nothing takes the entry and drops its features.
  auto none = backend(c);
  none->prefill(0, kPrompt);
  EXPECT_EQ(c->hits(), 2);
  EXPECT_TRUE(none->features(0).empty());
}

TEST_F(PrefillCacheTest, AnEntryWithoutTheWantedFeaturesIsAMissAndIsReplaced) {
  auto c = cache();
  backend(c)->prefill(0, kPrompt);
  auto with = backend(c, {2});
  with->prefill(0, kPrompt);
  EXPECT_EQ(c->hits(), 0);
  EXPECT_EQ(with->features(0).size(), kPrompt.size() * 32);
  with->reset(0);
  with->prefill(0, kPrompt);  // now stored with layer 2's features
  EXPECT_EQ(c->hits(), 1);
  EXPECT_EQ(entries().size(), 1u);
}

TEST_F(PrefillCacheTest, EntriesAreKeyedByPromptAndModel) {
  auto c = cache();
  auto cpu = backend(c);
  cpu->prefill(0, kPrompt);
  std::vector<int> other = kPrompt;
  other.back() = 31;
  cpu->prefill(1, other);  // another prompt: computed
  EXPECT_EQ(c->hits(), 0);

  // Another model key (other weights): the entry is not used.
  auto other_model = cache(8);
  EXPECT_EQ(backend(other_model, {}, 2)->prefill(0, kPrompt), backend(nullptr, {}, 2)->prefill(0, kPrompt));
  EXPECT_EQ(other_model->hits(), 0);

  // A prefill into a request that holds tokens already is never cached (only whole prompts are).
  cpu->reset(0);
  cpu->prefill(0, {1, 2});
  const std::int64_t misses = c->misses();
  cpu->prefill(0, kPrompt);
  EXPECT_EQ(c->misses(), misses);
  EXPECT_EQ(c->hits(), 0);
}

TEST_F(PrefillCacheTest, ADamagedEntryIsAnErrorNamingTheFile) {
  auto cpu = backend(cache());
  cpu->prefill(0, kPrompt);
  const fs::path entry = entries().at(0);
  fs::resize_file(entry, fs::file_size(entry) - 100);
  try {
    cpu->prefill(1, kPrompt);
    FAIL() << "a truncated entry was read";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(entry.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  { std::ofstream(entry, std::ios::binary | std::ios::trunc) << "not an entry at all"; }
  EXPECT_THROW(cpu->prefill(1, kPrompt), std::runtime_error);
}

TEST_F(PrefillCacheTest, TrailingBytesAreAnError) {
  auto cpu = backend(cache());
  cpu->prefill(0, kPrompt);
  { std::ofstream(entries().at(0), std::ios::binary | std::ios::app) << "x"; }
  EXPECT_THROW(cpu->prefill(1, kPrompt), std::runtime_error);
}

TEST_F(PrefillCacheTest, AnEntryThatCannotBeStoredLeavesThePrefillAsComputed) {
  auto c = cache();
  fs::remove_all(dir_);
  { std::ofstream(dir_) << "a file where the folder was"; }  // every write into the folder fails
  auto cpu = backend(c);
  auto plain = backend(nullptr);
  EXPECT_EQ(cpu->prefill(0, kPrompt), plain->prefill(0, kPrompt));
  EXPECT_EQ(cpu->decode({0}, {5}), plain->decode({0}, {5}));
  EXPECT_THROW(c->store(kPrompt, PrefilledRequest{}), std::runtime_error);
}

TEST(ContentFingerprint, FollowsTheBytesAndNamesAnUnreadableFile) {
  const fs::path dir = fs::temp_directory_path() / "specontext-fingerprint-test";
  fs::create_directories(dir);
  const fs::path a = dir / "a.bin";
  { std::ofstream(a) << "weights"; }
  const std::uint64_t h1 = content_fingerprint({a});
  { std::ofstream(a) << "weightz"; }
  EXPECT_NE(content_fingerprint({a}), h1);
  try {
    content_fingerprint({dir / "missing.bin"});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace specontext
