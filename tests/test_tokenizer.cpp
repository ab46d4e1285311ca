// The byte-level BPE tokenizer: SmolLM2-135M-Instruct's (from its GGUF) against Hugging Face
// `tokenizers` on the golden corpus of tests/fixtures/tokenizer/smollm2.json (ids, decoded text, and
// id sequences that decode to invalid UTF-8), special tokens, arbitrary bytes, the Llama 3 / Qwen2
// split regexes against HF's output, a small tokenizer.json, and errors on files without a usable
// tokenizer.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/gguf.hpp"
#include "engine/tokenizer.hpp"
#include "tests/expect_config_error.hpp"
#include "tests/temp_dir.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using testing::expect_config_error;
using testing::TempDir;

const fs::path kSmolLM2 = testing::smollm2_gguf();

const Tokenizer& smollm2() {
  static const Tokenizer t = Tokenizer::from_gguf(GgufFile(kSmolLM2));
  return t;
}

#define SKIP_WITHOUT_SMOLLM2() \
  if (!fs::exists(kSmolLM2)) GTEST_SKIP() << kSmolLM2 << " is absent (scripts/fetch_smollm2.sh fetches it)"

nlohmann::json fixture() {
  std::ifstream in(fs::path(SPECONTEXT_FIXTURES_DIR) / "tokenizer" / "smollm2.json");
  return nlohmann::json::parse(in);
}

TEST(TokenizerSmolLM2, MetadataFromGguf) {
  SKIP_WITHOUT_SMOLLM2();
  const Tokenizer& t = smollm2();
  EXPECT_EQ(t.vocab_size(), 49152);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.pad_id(), 2);
  EXPECT_EQ(t.token(1), "<|im_start|>");
  EXPECT_TRUE(t.is_special(2));
  EXPECT_FALSE(t.is_special(100));
  EXPECT_NE(t.chat_template().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(t.pre_tokenizer(), (std::vector<PreTokenizeStep>{PreTokenizeStep::IndividualDigits, PreTokenizeStep::Gpt2Regex}));
}

TEST(TokenizerSmolLM2, MatchesHuggingFaceOnCorpus) {
  SKIP_WITHOUT_SMOLLM2();
  const Tokenizer& t = smollm2();
  const nlohmann::json f = fixture();
  ASSERT_GE(f["encode"].size(), 200u);
  int matched = 0;
  for (const auto& e : f["encode"]) {
    const std::string text = e["text"];
    const std::vector<int> want = e["ids"];
    const std::vector<int> got = t.encode(text);
    EXPECT_EQ(got, want) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(t.decode(want), e["decoded"].get<std::string>()) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(t.decode(want, true), e["decoded_skip_special"].get<std::string>()) << "text: " << nlohmann::json(text).dump();
    matched += got == want && t.decode(got) == e["decoded"].get<std::string>();
  }
  std::cout << "[ tokenizer ] " << matched << " / " << f["encode"].size() << " corpus strings match HF tokenizers\n";
}

TEST(TokenizerSmolLM2, DecodesLikeHuggingFace) {
  SKIP_WITHOUT_SMOLLM2();
  const Tokenizer& t = smollm2();
  for (const auto& d : fixture()["decode"]) {
    const std::vector<int> ids = d["ids"];
    EXPECT_EQ(t.decode(ids), d["decoded"].get<std::string>()) << d["ids"].dump();
    EXPECT_EQ(t.decode(ids, true), d["decoded_skip_special"].get<std::string>()) << d["ids"].dump();
  }
}

TEST(TokenizerSmolLM2, SpecialTokensAndEmpty) {
  SKIP_WITHOUT_SMOLLM2();
  const Tokenizer& t = smollm2();
  EXPECT_TRUE(t.encode("").empty());
  EXPECT_EQ(t.decode({}), "");
  EXPECT_EQ(t.encode("<|im_start|>"), std::vector<int>{1});
  EXPECT_EQ(t.encode("<|im_end|><|endoftext|>"), (std::vector<int>{2, 0}));
  const std::vector<int> ids = t.encode("<|im_start|>user\nHi<|im_end|>\n");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 2), ids.end());
  EXPECT_EQ(t.decode(ids), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(t.decode(ids, true), "user\nHi\n");
  // An unclosed special token is plain text.
  const std::vector<int> partial = t.encode("<|im_start");
  EXPECT_EQ(std::find(partial.begin(), partial.end(), 1), partial.end());
  EXPECT_THROW(t.decode({49152}), std::invalid_argument);
  EXPECT_THROW(t.decode({-1}), std::invalid_argument);
}

TEST(TokenizerSmolLM2, AnyByteSequenceEncodes) {
  SKIP_WITHOUT_SMOLLM2();
  const Tokenizer& t = smollm2();
  // SmolLM2's vocabulary has no token for 21 bytes; HF drops them (its BPE model has no unk token).
  int missing = 0;
  for (int b = 0; b < 256; ++b) {
    const std::string s(1, static_cast<char>(b));
    const std::vector<int> ids = t.encode(s);
    if (!t.byte_has_token(static_cast<std::uint8_t>(b))) {
      ++missing;
      EXPECT_TRUE(ids.empty()) << "byte " << b;
      continue;
    }
    ASSERT_EQ(ids.size(), 1u) << "byte " << b;
    EXPECT_EQ(t.token(ids[0]), byte_to_token_char(static_cast<std::uint8_t>(b)));
    EXPECT_EQ(t.decode(ids), utf8_lossy(s));
  }
  EXPECT_EQ(missing, 21);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);
    const std::vector<int> ids = t.encode(s);
    std::string kept;
    for (char c : s)
      if (t.byte_has_token(static_cast<std::uint8_t>(c))) kept.push_back(c);
    // Every byte with a token comes back; decoding is lossy only where the bytes are not UTF-8.
    // (Random bytes can spell a special token, so compare with skip_special off.)
    EXPECT_EQ(t.decode(ids), utf8_lossy(kept));
  }
}

TEST(TokenizerUtf8, LossyMatchesRust) {
  EXPECT_EQ(utf8_lossy("abc"), "abc");
  EXPECT_EQ(utf8_lossy("\xE4\xB8"), "\xEF\xBF\xBD");          // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xE4\xB8" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(utf8_lossy("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong lead: each byte
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(utf8_lossy("\xFF"), "\xEF\xBF\xBD");
}

// Expected pieces from HF tokenizers' Split(Regex(...), behavior="isolated").
TEST(TokenizerPreTokenize, Llama3AndQwen2Regexes) {
  const std::string s = "I'LL pay 12345 dollars!!\n\n  (ok) \r\n x  \tend";
  EXPECT_EQ(pre_tokenize(s, {PreTokenizeStep::Llama3Regex}),
            (std::vector<std::string>{"I", "'LL", " pay", " ", "123", "45", " dollars", "!!\n\n", " ", " (", "ok", ")", " \r\n", " x", "  ", "\tend"}));
  EXPECT_EQ(pre_tokenize(s, {PreTokenizeStep::Qwen2Regex}),
            (std::vector<std::string>{"I", "'LL", " pay", " ", "1", "2", "3", "4", "5", " dollars", "!!\n\n", " ", " (", "ok", ")", " \r\n", " x", "  ", "\tend"}));
}

TEST(TokenizerPreTokenize, Gpt2RegexAndDigits) {
  EXPECT_EQ(pre_tokenize("Hello  world's 42!\n", {PreTokenizeStep::Gpt2Regex}),
            (std::vector<std::string>{"Hello", " ", " world", "'s", " 42", "!", "\n"}));
  EXPECT_EQ(pre_tokenize("a 42", {PreTokenizeStep::IndividualDigits, PreTokenizeStep::Gpt2Regex}),
            (std::vector<std::string>{"a", " ", "4", "2"}));
  EXPECT_TRUE(pre_tokenize("", {PreTokenizeStep::Gpt2Regex}).empty());
}

// A tiny tokenizer.json: vocabulary, both spellings of merges, an added special token, a Split regex.
TEST(TokenizerJson, LoadsAndEncodes) {
  TempDir dir("tokenizer");
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_to_token_char(static_cast<std::uint8_t>(b))] = next++;
  vocab["he"] = next++;
  vocab["ll"] = next++;
  vocab["hell"] = next++;
  vocab["Ġw"] = next++;
  const nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array({"h e", nlohmann::json::array({"l", "l"}), "he ll", "Ġ w"})}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", nlohmann::json::array({
          {{"type", "Split"}, {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array({{{"id", next}, {"content", "<|eot|>"}, {"special", true}}})}};
  std::ofstream(dir.path() / "tokenizer.json") << j.dump();
  std::ofstream(dir.path() / "tokenizer_config.json") << nlohmann::json{{"eos_token", "<|eot|>"}, {"add_bos_token", false}}.dump();
  const Tokenizer t = Tokenizer::load(dir.path());
  EXPECT_EQ(t.pre_tokenizer(), std::vector<PreTokenizeStep>{PreTokenizeStep::Llama3Regex});
  EXPECT_EQ(t.eos_id(), next);
  EXPECT_EQ(t.encode("hello wo<|eot|>"), (std::vector<int>{258, 'o', 259, 'o', next}));
  EXPECT_EQ(t.decode(t.encode("hello wo<|eot|>")), "hello wo<|eot|>");
  EXPECT_EQ(t.decode(t.encode("hello wo<|eot|>"), true), "hello wo");
}

TEST(TokenizerErrors, GgufWithoutTokenizer) {
  const fs::path f = fs::path(SPECONTEXT_FIXTURES_DIR) / "gguf" / "llama-gqa-f32.gguf";
  expect_config_error([&] { Tokenizer::from_gguf(GgufFile(f)); }, "llama-gqa-f32.gguf", "tokenizer.ggml.model");
}

TEST(TokenizerErrors, GgufWithSentencePieceTokenizer) {
  TempDir dir("tokenizer");
  const fs::path f = dir.path() / "spm.gguf";
  std::string b = "GGUF";
  const auto raw = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
  };
  const auto str = [&](const std::string& s) {
    raw(s.size(), 8);
    b += s;
  };
  raw(3, 4), raw(0, 8), raw(2, 8);
  str("general.architecture"), raw(8, 4), str("llama");
  str("tokenizer.ggml.model"), raw(8, 4), str("llama");
  while (b.size() % 32) b.push_back('\0');
  std::ofstream(f, std::ios::binary) << b;
  expect_config_error([&] { Tokenizer::from_gguf(GgufFile(f)); }, "spm.gguf", "tokenizer.ggml.model");
  expect_config_error([&] { Tokenizer::load(f); }, "spm.gguf", "tokenizer.ggml.model");
}

TEST(TokenizerErrors, UnsupportedTokenizerJson) {
  TempDir dir("tokenizer");
  std::ofstream(dir.path() / "tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": []}})";
  expect_config_error([&] { Tokenizer::load(dir.path()); }, "tokenizer.json", "model.type");
  fs::create_directory(dir.path() / "empty");
  expect_config_error([&] { Tokenizer::load(dir.path() / "empty"); }, "empty", "tokenizer.json");
}

}  // namespace
}  // namespace specontext
