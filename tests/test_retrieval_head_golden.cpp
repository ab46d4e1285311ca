// The retrieval head on the real pair — SmolLM2-135M-Instruct on the CPU reference, with feature
// capture, and our EAGLE-3 draft models/smollm2-eagle3 — against PyTorch
// (tests/fixtures/smollm2-retrieval/, made by make_retrieval_fixture.py with transformers reading
// the same GGUF and the draft's own module): the features (Hugging Face hidden_states), the draft's
// roped keys, each query head's softmax over the keys, and the head-level and batch-level selections
// at B = 16 and 64. The prompt's last positions are queried twice: after a prefill up to them, and
// through decode steps with the features the LLM's own decode steps capture. Skips without the GGUF.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/cpu_backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/retrieval_head.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// fp32 against fp32 (30 layers in another summation order, then the draft). Measured worst
// disagreements (2 cores with AVX-512, transformers 5.24 on the CPU): features 2e-6 and keys 6e-6 relative,
// probabilities 2e-6 absolute, no selection differing; the bounds leave room for other CPUs.
constexpr double kMaxRowRelDiff = 1e-3;  // features and keys: max |a - b| / max |b| over a row
constexpr double kMaxProbDiff = 1e-4;    // softmax probabilities, absolute
// A selection may differ from PyTorch's only where its B-th and (B+1)-th scores are closer than this
// (a near-tie the two computations may order either way).
constexpr double kTieGap = 1e-5;

fs::path draft_dir() { return testing::smollm2_draft_dir(); }

json load_fixture() {
  std::ifstream in(fs::path(SPECONTEXT_FIXTURES_DIR) / "smollm2-retrieval" / "expected.json");
  return json::parse(in);
}

double row_rel_diff(const float* got, const std::vector<float>& want) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - want[i]));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return diff / scale;
}

class RetrievalHeadGolden : public ::testing::Test {
 protected:
  // The LLM and the head are loaded once for the suite (the GGUF takes seconds to dequantise);
  // every test starts from an empty request 0.
  static void SetUpTestSuite() {
    if (!fs::exists(testing::smollm2_gguf())) return;
    const GgufFile file(testing::smollm2_gguf());
    const ModelConfig config = gguf_engine_config(file);
    cpu_ = std::make_unique<CpuBackend>(config, gguf_weights(config, file), 1, 512);
    Eagle3Draft draft = load_eagle3_draft(draft_dir(), config);
    cpu_->set_feature_layers(draft.config.aux_layers);
    head_ = std::make_unique<RetrievalHeadCpu>(std::move(draft), &cpu_->weights().embed, 1, 512);
  }
  static void TearDownTestSuite() {
    head_.reset();
    cpu_.reset();
  }

  void SetUp() override {
    if (!cpu_) GTEST_SKIP() << "no " << testing::smollm2_gguf() << " (scripts/fetch_smollm2.sh)";
    fixture_ = load_fixture();
    ids_ = fixture_.at("ids").get<std::vector<int>>();
    ASSERT_EQ(cpu_->feature_layers(), fixture_.at("aux_layer_ids").get<std::vector<int>>());
    cpu_->reset(0);
    head_->reset(0);
  }

  // The prompt's features from one prefill, [ids, 3 * 576].
  std::vector<float> prefill_features() {
    cpu_->reset(0);
    cpu_->prefill(0, ids_);
    return cpu_->features(0);
  }

  // Compares one decode query's attention with the fixture's record of it.
  void expect_matches(const HeadAttention& a, const json& want) {
    const int p = want.at("llm_position").get<int>();
    ASSERT_EQ(a.keys, p);
    const auto& heads = want.at("heads");
    ASSERT_EQ(static_cast<int>(heads.size()), a.q_heads);
    for (int h = 0; h < a.q_heads; ++h) {
      const auto keys = heads[h].at("top_keys").get<std::vector<int>>();
      const auto probs = heads[h].at("top_probs").get<std::vector<double>>();
      double sum = 0;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const double got = a.probs[h * a.keys + keys[i]];
        max_prob_diff_ = std::max(max_prob_diff_, std::abs(got - probs[i]));
        EXPECT_NEAR(got, probs[i], kMaxProbDiff) << "query " << p << ", head " << h << ", key " << keys[i];
        sum += got;
      }
      EXPECT_NEAR(sum, heads[h].at("top_sum").get<double>(), kMaxProbDiff * 4) << "query " << p << ", head " << h;
    }
    for (const char* level : {"head_level", "batch_level"}) {
      for (const auto& [budget, record] : want.at(level).items()) {
        const bool per_head = std::string(level) == "head_level";
        const TokenSelection s = select_positions(a, std::stoll(budget), per_head ? SelectionLevel::Head : SelectionLevel::Batch);
        for (int g = 0; g < a.kv_heads; ++g) {
          const auto indices = (per_head ? record.at("indices")[g] : record.at("indices")).get<std::vector<int>>();
          const auto boundary = (per_head ? record.at("boundary")[g] : record.at("boundary")).get<std::vector<double>>();
          const auto got = s.head(g);
          if (std::vector<int>(got.begin(), got.end()) == indices) continue;
          ++mismatched_sets_;
          EXPECT_LT(boundary[0] - boundary[1], kTieGap)
              << level << " B=" << budget << ", query " << p << ", KV head " << g << ": sets differ away from a near-tie";
        }
      }
    }
  }

  static inline std::unique_ptr<CpuBackend> cpu_;
  static inline std::unique_ptr<RetrievalHeadCpu> head_;
  json fixture_;
  std::vector<int> ids_;
  double max_prob_diff_ = 0;
  int mismatched_sets_ = 0;
};

TEST_F(RetrievalHeadGolden, FeaturesAreHuggingFaceHiddenStates) {
  const std::vector<float> features = prefill_features();
  const auto width = static_cast<std::size_t>(cpu_->feature_width());
  ASSERT_EQ(features.size(), ids_.size() * width);
  const auto& f = fixture_.at("features");
  const auto positions = f.at("positions").get<std::vector<int>>();
  double worst = 0;
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const auto want = f.at("rows")[i].get<std::vector<float>>();
    ASSERT_EQ(want.size(), width);
    // Each aux layer's block on its own: the deeper residual streams are far larger.
    for (std::size_t b = 0; b < width; b += 576) {
      const std::vector<float> block(want.begin() + b, want.begin() + b + 576);
      const double d = row_rel_diff(features.data() + positions[i] * width + b, block);
      worst = std::max(worst, d);
      EXPECT_LE(d, kMaxRowRelDiff) << "position " << positions[i] << ", aux layer " << b / 576;
    }
  }
  RecordProperty("max_feature_rel_diff", std::to_string(worst));
}

TEST_F(RetrievalHeadGolden, PrefillThenOneStepMatchesPyTorch) {
  const std::vector<float> features = prefill_features();
  const auto width = static_cast<std::size_t>(head_->feature_width());
  for (const auto& q : fixture_.at("queries")) {
    const int p = q.at("llm_position").get<int>();
    head_->reset(0);
    head_->prefill(0, std::span(ids_).first(p), std::span(features).first(p * width));
    expect_matches(head_->decode(0, ids_[p], std::span(features).subspan((p - 1) * width, width)), q);
  }
  // Keys of the last query's cache (keys 0..p-1), kv heads concatenated as the fixture stores them.
  const auto& k = fixture_.at("keys");
  const auto positions = k.at("draft_positions").get<std::vector<int>>();
  double worst = 0;
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const auto want = k.at("rows")[i].get<std::vector<float>>();
    std::vector<float> got;
    for (int g = 0; g < 3; ++g) {
      const auto keys = head_->cached_keys(0, g);
      got.insert(got.end(), keys.begin() + positions[i] * 64, keys.begin() + (positions[i] + 1) * 64);
    }
    const double d = row_rel_diff(got.data(), want);
    worst = std::max(worst, d);
    EXPECT_LE(d, kMaxRowRelDiff) << "draft key " << positions[i];
  }
  RecordProperty("max_key_rel_diff", std::to_string(worst));
  RecordProperty("max_prob_diff", std::to_string(max_prob_diff_));
  RecordProperty("mismatched_sets", mismatched_sets_);
}

TEST_F(RetrievalHeadGolden, DecodeStepsWithTheLlmsOwnFeaturesMatchPyTorch) {
  const std::vector<float> whole = prefill_features();
  const auto width = static_cast<std::size_t>(head_->feature_width());
  std::map<int, json> queries;
  for (const auto& q : fixture_.at("queries")) queries[q.at("llm_position").get<int>()] = q;
  const int first = queries.begin()->first - 7;  // a prefill, then decode steps through every query

  cpu_->reset(0);
  cpu_->prefill(0, std::vector<int>(ids_.begin(), ids_.begin() + first));
  head_->prefill(0, std::span(ids_).first(first), cpu_->features(0));
  std::vector<float> previous(cpu_->features(0).end() - static_cast<std::ptrdiff_t>(width), cpu_->features(0).end());
  for (int t = first; t <= queries.rbegin()->first; ++t) {
    const HeadAttention a = head_->decode(0, ids_[t], previous);
    if (queries.count(t)) expect_matches(a, queries.at(t));
    cpu_->decode({0}, {ids_[t]});
    previous = cpu_->features(0);
    // The LLM's decode step captures what its prefill did.
    EXPECT_LE(row_rel_diff(previous.data(), std::vector<float>(whole.begin() + t * width, whole.begin() + (t + 1) * width)), 1e-4)
        << "position " << t;
  }
  RecordProperty("max_prob_diff", std::to_string(max_prob_diff_));
  RecordProperty("mismatched_sets", mismatched_sets_);
}

}  // namespace
}  // namespace specontext
