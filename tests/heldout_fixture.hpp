#pragma once
// Held-out documents and a tokenizer for task tests that need neither the committed corpus
// (models/heldout/) nor the SmolLM2 GGUF: seeded synthetic prose (wrapped lines and paragraphs like
// Austen's, numbered verse lines like the Bibles') and Python-like code, and a byte-level
// tokenizer.json whose ids are the bytes (256 BOS, added to every prompt, and 257 EOS), so that it
// fits the tiny fixtures' vocabulary of 512.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/heldout_corpus.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/tokenizer.hpp"

namespace specontext::testing {

inline const std::filesystem::path& committed_heldout_dir() {
  static const std::filesystem::path dir = std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / ".." / ".." / "models" / "heldout";
  return dir;
}

// Sentences of 4..12 words (a few with "Mr." inside, a few in quotes); as wrapped lines of at most
// 70 characters in paragraphs of 3..6 sentences, or one numbered verse per line.
// Passkey instances over the committed held-out documents (the SmolLM2 end-to-end tests' input).
inline std::vector<TaskInstance> committed_passkey_instances(const Tokenizer& tok, std::int64_t context, int trials) {
  TaskOptions o;
  o.kind = TaskKind::Passkey;
  o.context = context;
  o.trials = trials;
  return build_tasks(o, HeldoutCorpus::load(committed_heldout_dir()), tok);
}

inline std::string synthetic_prose(std::uint32_t seed, int sentences, bool verses) {
  static const char* const words[] = {"river", "house", "letter", "garden", "morning", "walked", "spoke",  "quiet", "family", "window",
                                      "road",  "said",  "never",  "before", "little",  "should", "friend", "came",  "often",  "evening"};
  std::mt19937 rng(seed);
  std::string text, line;
  for (int s = 0; s < sentences; ++s) {
    std::string sentence = rng() % 7 == 0 ? "Mr. Elton" : "The";
    const int n = 4 + static_cast<int>(rng() % 9);
    for (int w = 0; w < n; ++w) sentence += std::string(" ") + words[rng() % 20];
    sentence += rng() % 5 == 0 ? "?" : ".";
    if (rng() % 6 == 0) sentence = "\"" + sentence + "\"";
    if (verses) {
      text += std::to_string(s + 1) + " " + sentence + "\n";
      continue;
    }
    for (std::size_t at = 0; at < sentence.size();) {  // wrap word by word
      const std::size_t end = std::min(sentence.find(' ', at), sentence.size());
      const std::string word = sentence.substr(at, end - at);
      if (!line.empty() && line.size() + 1 + word.size() > 70) {
        text += line + "\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
      at = end + 1;
    }
    line += " ";
    if (rng() % 4 == 0) {
      text += line.substr(0, line.size() - 1) + "\n\n";
      line.clear();
    }
  }
  return text + line;
}

inline std::string synthetic_code(int functions) {
  std::string text;
  for (int f = 0; f < functions; ++f)
    text += "def step_" + std::to_string(f) + "(x):\n    # Move x along by " + std::to_string(f) + ".\n    return x + " + std::to_string(f) + "\n\n";
  return text;
}

inline void write_heldout(const std::filesystem::path& dir, int sentences = 600) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "austen--synthetic.txt") << synthetic_prose(1, sentences, false);
  std::ofstream(dir / "kjv--synthetic.txt") << synthetic_prose(2, sentences / 2, true);
  std::ofstream(dir / "python--synthetic.py.txt") << synthetic_code(sentences / 2);
}

// A byte-level BPE tokenizer.json without merges: every byte is its own id.
inline Tokenizer byte_tokenizer(const std::filesystem::path& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_token_char(static_cast<std::uint8_t>(b))] = b;
  const nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", nlohmann::json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                                                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array({{{"id", 256}, {"content", "<s>"}, {"special", true}}, {{"id", 257}, {"content", "</s>"}, {"special", true}}})}};
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}}.dump();
  return Tokenizer::load(dir);
}

}  // namespace specontext::testing
