#pragma once
// The real LLM's golden references: what Hugging Face transformers computes from the SmolLM2 GGUF
// (tests/fixtures/smollm2/expected.json, made by make_smollm2_goldens.py on the H200), and one
// comparison that CPU and CUDA tests share. Per stored position the file keeps the 256 largest
// logits, every 97th id's logit and the log-sum-exp of the row.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/smollm2_model.hpp"

namespace specontext::testing {

struct StoredLogits {
  std::vector<int> top_ids;
  std::vector<float> top_logits, stride_logits;
  double logsumexp = 0;
};

struct SmolLM2Prompt {
  std::string text;
  std::vector<int> ids, positions, greedy;
  std::vector<double> greedy_margins;  // transformers' top-1 minus top-2 logit at each greedy step
  std::vector<StoredLogits> logits;  // one per stored position
};

struct SmolLM2Goldens {
  std::string generator;
  int stride = 0;
  std::vector<SmolLM2Prompt> prompts;
};

inline SmolLM2Goldens load_smollm2_goldens() {
  std::ifstream in(std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / "smollm2" / "expected.json");
  const nlohmann::json e = nlohmann::json::parse(in);
  SmolLM2Goldens g;
  g.generator = e.at("generator").get<std::string>();
  g.stride = e.at("stride").get<int>();
  for (const auto& p : e.at("prompts")) {
    SmolLM2Prompt r;
    r.text = p.at("text").get<std::string>();
    r.ids = p.at("ids").get<std::vector<int>>();
    r.positions = p.at("positions").get<std::vector<int>>();
    r.greedy = p.at("greedy").get<std::vector<int>>();
    r.greedy_margins = p.at("greedy_margins").get<std::vector<double>>();
    for (const auto& l : p.at("logits")) {
      r.logits.push_back({l.at("top_ids").get<std::vector<int>>(), l.at("top_logits").get<std::vector<float>>(),
                          l.at("stride_logits").get<std::vector<float>>(), l.at("logsumexp").get<double>()});
    }
    g.prompts.push_back(std::move(r));
  }
  return g;
}

// How far a full logit row is from the stored one: the largest absolute difference over the stored
// logits and the log-sum-exp, and whether the argmax agrees.
struct LogitAgreement {
  double max_abs_diff = 0;
  bool same_argmax = false;
};

inline LogitAgreement compare_to_stored(const float* row, std::size_t vocab, const StoredLogits& want, int stride) {
  LogitAgreement a;
  for (std::size_t i = 0; i < want.top_ids.size(); ++i) {
    a.max_abs_diff = std::max(a.max_abs_diff, std::abs(double(row[want.top_ids[i]]) - want.top_logits[i]));
  }
  for (std::size_t i = 0; i < want.stride_logits.size(); ++i) {
    a.max_abs_diff = std::max(a.max_abs_diff, std::abs(double(row[i * stride]) - want.stride_logits[i]));
  }
  const float* argmax = std::max_element(row, row + vocab);
  const double peak = *argmax;
  double sum = 0;
  for (std::size_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - peak);
  a.max_abs_diff = std::max(a.max_abs_diff, std::abs(peak + std::log(sum) - want.logsumexp));
  a.same_argmax = static_cast<int>(argmax - row) == want.top_ids[0];
  return a;
}

}  // namespace specontext::testing
