// The byte-level BPE tokenizer: SmolLM2-135M-Instruct's (from its GGUF) against Hugging Face
// `tokenizers` on the golden corpus of tests/fixtures/tokenizer/smollm2.json (ids, decoded text, and
// id sequences that decode to invalid UTF-8), special tokens, arbitrary bytes, the Llama 3 / Qwen2
// split regexes against HF's output, Llama 3- and Qwen2-shaped tokenizer.json files trained by HF
// (tests/fixtures/tokenizer/{llama3,qwen2}-style) against HF's goldens, small tokenizer.json files
// (post-processor BOS), the NFC normaliser against Python's unicodedata / HF (tests/fixtures/tokenizer/nfc.json)
// and its place in encode(), and errors on files without a usable tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
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

// HF's NFC on a generated set (tests/fixtures/tokenizer/make_nfc_fixture.py): every character with a
// canonical decomposition, composed and decomposed, every combining mark reordered, Hangul, random mixes,
// all as Python's unicodedata gives them; and the characters assigned after Unicode 9.0, where HF's
// tables (9.0) and so normalize_nfc differ from unicodedata.
TEST(TokenizerNfc, MatchesUnicodedataGolden) {
  std::ifstream in(fs::path(SPECONTEXT_FIXTURES_DIR) / "tokenizer" / "nfc.json");
  const nlohmann::json f = nlohmann::json::parse(in);
  ASSERT_GE(f["cases"].size(), 6000u);
  int changed = 0;
  for (const auto& c : f["cases"]) {
    const std::string text = c[0], want = c[1];
    EXPECT_EQ(normalize_nfc(text), want) << nlohmann::json(text).dump();
    EXPECT_EQ(normalize_nfc(want), want) << nlohmann::json(want).dump();
    changed += want != text;
  }
  EXPECT_GT(changed, 4000);
  ASSERT_GE(f["after_unicode_9"].size(), 250u);
  for (const auto& c : f["after_unicode_9"]) {
    const std::string text = c[0], hf = c[1];
    EXPECT_EQ(normalize_nfc(text), hf) << nlohmann::json(text).dump();
  }
}

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

TEST(TokenizerNfc, EveryHangulSyllableFromItsJamo) {
  for (char32_t s = 0; s < 11172; ++s) {
    const char32_t l = 0x1100 + s / 588, v = 0x1161 + (s % 588) / 28, t = 0x11A7 + s % 28;
    const std::string jamo = utf8(l) + utf8(v) + (t != 0x11A7 ? utf8(t) : "");
    EXPECT_EQ(normalize_nfc(jamo), utf8(0xAC00 + s)) << std::hex << 0xAC00 + s;
    EXPECT_EQ(normalize_nfc(utf8(0xAC00 + s)), utf8(0xAC00 + s));
  }
}

TEST(TokenizerNfc, FastPathAndInvalidBytes) {
  EXPECT_EQ(normalize_nfc(""), "");
  EXPECT_EQ(normalize_nfc("plain ASCII\r\n\t"), "plain ASCII\r\n\t");
  EXPECT_EQ(normalize_nfc("caf\u00e9 \u4e2d \U0001F600 \uac00"), "caf\u00e9 \u4e2d \U0001F600 \uac00");
  // Each invalid byte is kept as it is and acts as a starter: nothing before it composes with a mark after it.
  EXPECT_EQ(normalize_nfc("e\xFF\u0301"), "e\xFF\u0301");
  EXPECT_EQ(normalize_nfc("e\u0301\xFF"), "\u00e9\xFF");
  EXPECT_EQ(normalize_nfc("\u212b\xC0\x80"), "\u00c5\xC0\x80");  // ANGSTROM SIGN, overlong bytes
  EXPECT_EQ(normalize_nfc("e\xE4\xB8\u0301"), "e\xE4\xB8\u0301");  // truncated sequence
  EXPECT_EQ(normalize_nfc("\xED\xA0\x80\u0301a\u0301"), "\xED\xA0\x80\u0301\u00e1");  // surrogate bytes
  EXPECT_EQ(normalize_nfc("\xF0\x9F\x98" "d\u0323\u0307"), "\xF0\x9F\x98\u1e0d\u0307");
  // Random bytes over marks and letters: idempotent, and the invalid bytes all survive.
  std::mt19937 rng(11);
  const std::vector<std::string> parts = {"e", "a", "\u0301", "\u0323", "\u0308", "\u1100", "\u1161", "\u11a8",
                                          "\xFF", "\xC3", "\xCC", "\x81", "\xE4\xB8", "\u212b", " "};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    for (int k = rng() % 10; k > 0; --k) s += parts[rng() % parts.size()];
    const std::string n = normalize_nfc(s);
    EXPECT_EQ(normalize_nfc(n), n) << nlohmann::json(utf8_lossy(s)).dump();
    EXPECT_EQ(std::count(n.begin(), n.end(), '\xFF'), std::count(s.begin(), s.end(), '\xFF'));
  }
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

// Stand-ins for Llama 3's and Qwen2's tokenizer.json, trained by HF tokenizers with the same structure
// (tests/fixtures/tokenizer/make_style_tokenizers.py), and HF's ids, decodes, normalised text and
// split-regex pieces on a corpus of strings.
fs::path style_dir(const std::string& name) { return fs::path(SPECONTEXT_FIXTURES_DIR) / "tokenizer" / name; }

nlohmann::json style_fixture(const std::string& name) {
  std::ifstream in(fs::path(SPECONTEXT_FIXTURES_DIR) / "tokenizer" / (name + ".json"));
  return nlohmann::json::parse(in);
}

const Tokenizer& llama3_style() {
  static const Tokenizer t = Tokenizer::load(style_dir("llama3-style"));
  return t;
}

const Tokenizer& qwen2_style() {
  static const Tokenizer t = Tokenizer::from_tokenizer_json(style_dir("qwen2-style") / "tokenizer.json");
  return t;
}

// Every golden entry, from the raw text: ids, ids with HF's special tokens, decodes. Entries whose text
// the normalizer changes are counted.
void expect_matches_corpus(const Tokenizer& t, const std::string& name) {
  const nlohmann::json f = style_fixture(name);
  ASSERT_EQ(t.vocab_size(), f["vocab_size"].get<int>());
  ASSERT_GE(f["encode"].size(), 400u);
  int matched = 0, normalized_differs = 0;
  for (const auto& e : f["encode"]) {
    const std::string text = e["text"];
    const std::string where = name + " text: " + nlohmann::json(text).dump();
    const std::vector<int> want = e["ids"];
    normalized_differs += e["normalized"].get<std::string>() != text;
    const std::vector<int> got = t.encode(text);
    EXPECT_EQ(got, want) << where;
    // HF's encode with add_special_tokens: the caller's BOS when add_bos(), nothing else.
    std::vector<int> with_special = want;
    if (t.add_bos()) with_special.insert(with_special.begin(), t.bos_id());
    EXPECT_EQ(with_special, e["ids_with_special"].get<std::vector<int>>()) << where;
    EXPECT_EQ(t.decode(want), e["decoded"].get<std::string>()) << where;
    EXPECT_EQ(t.decode(want, true), e["decoded_skip_special"].get<std::string>()) << where;
    matched += got == want && t.decode(got) == e["decoded"].get<std::string>();
  }
  std::cout << "[ tokenizer ] " << name << ": " << matched << " / " << f["encode"].size() << " corpus strings match HF tokenizers";
  if (normalized_differs > 0) std::cout << " (" << normalized_differs << " of them changed by the normalizer)";
  std::cout << "\n";
  for (const auto& d : f["decode"]) {
    const std::vector<int> ids = d["ids"];
    EXPECT_EQ(t.decode(ids), d["decoded"].get<std::string>()) << name << " " << d["ids"].dump();
    EXPECT_EQ(t.decode(ids, true), d["decoded_skip_special"].get<std::string>()) << name << " " << d["ids"].dump();
  }
}

// The split regex alone, on the normaliser's output, against HF's Split(Regex(...), "isolated").
void expect_pieces_match(PreTokenizeStep step, const std::string& name) {
  const nlohmann::json f = style_fixture(name);  // a range-for over a temporary's member would dangle
  for (const auto& e : f["encode"]) {
    const std::string normalized = e["normalized"];
    EXPECT_EQ(pre_tokenize(normalized, {step}), e["pieces"].get<std::vector<std::string>>())
        << name << " text: " << nlohmann::json(normalized).dump();
  }
}

TEST(TokenizerLlama3Style, LoadsLikeLlama3) {
  const Tokenizer& t = llama3_style();
  EXPECT_EQ(t.pre_tokenizer(), std::vector<PreTokenizeStep>{PreTokenizeStep::Llama3Regex});
  EXPECT_EQ(t.vocab_size(), 3020);
  ASSERT_TRUE(t.find("<|begin_of_text|>"));
  EXPECT_EQ(t.bos_id(), 3010);
  EXPECT_EQ(*t.find("<|begin_of_text|>"), 3010);
  // No add_bos_token in tokenizer_config.json, as in Llama 3: the TemplateProcessing post-processor
  // prepends <|begin_of_text|>.
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.eos_id(), 3019);
  EXPECT_EQ(t.token(3019), "<|eot_id|>");
  EXPECT_EQ(t.pad_id(), -1);
  for (int id = 3010; id < 3020; ++id) EXPECT_TRUE(t.is_special(id)) << id;
  EXPECT_FALSE(t.is_added(3009));
  EXPECT_NE(t.chat_template().find("<|start_header_id|>"), std::string::npos);
  EXPECT_EQ(t.encode("<|start_header_id|>user<|end_header_id|>").front(), 3016);
}

TEST(TokenizerLlama3Style, MatchesHuggingFaceOnCorpus) { expect_matches_corpus(llama3_style(), "llama3-style"); }

TEST(TokenizerLlama3Style, SplitRegexMatchesHuggingFace) { expect_pieces_match(PreTokenizeStep::Llama3Regex, "llama3-style"); }

TEST(TokenizerQwen2Style, LoadsLikeQwen2) {
  const Tokenizer& t = qwen2_style();
  EXPECT_EQ(t.pre_tokenizer(), std::vector<PreTokenizeStep>{PreTokenizeStep::Qwen2Regex});
  EXPECT_EQ(t.vocab_size(), 3003);
  EXPECT_EQ(t.bos_id(), -1);  // bos_token null
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.eos_id(), 3002);
  EXPECT_EQ(t.token(3002), "<|im_end|>");
  EXPECT_EQ(t.pad_id(), 3000);
  EXPECT_EQ(t.token(3000), "<|endoftext|>");
  for (int id = 3000; id < 3003; ++id) EXPECT_TRUE(t.is_special(id)) << id;
  EXPECT_NE(t.chat_template().find("<|im_start|>"), std::string::npos);
}

// From the raw text, NFC included: the corpus has 50 strings that NFC changes ("e\u0301", "\u212b",
// Hangul jamo, special tokens next to combining marks, ...).
TEST(TokenizerQwen2Style, MatchesHuggingFaceOnCorpus) { expect_matches_corpus(qwen2_style(), "qwen2-style"); }

// The normaliser alone against HF's normalizer output on the whole string (special tokens included).
TEST(TokenizerQwen2Style, NormalizesToNfcLikeHuggingFace) {
  EXPECT_TRUE(qwen2_style().applies_nfc());
  EXPECT_FALSE(llama3_style().applies_nfc());
  int changed = 0;
  const nlohmann::json f = style_fixture("qwen2-style");
  for (const auto& e : f["encode"]) {
    const std::string text = e["text"], normalized = e["normalized"];
    EXPECT_EQ(normalize_nfc(text), normalized) << "text: " << nlohmann::json(text).dump();
    changed += normalized != text;
  }
  EXPECT_EQ(changed, 50);
}

// HF cuts special (normalized: false) tokens out of the raw text before NFC, so a mark after one does
// not compose with its '>' (">" U+0338 is U+226F), and NFC runs on each piece between them alone.
// Ids from tokenizers 0.23.3.
TEST(TokenizerQwen2Style, SpecialTokensAreCutBeforeNfc) {
  const Tokenizer& t = qwen2_style();
  EXPECT_EQ(t.encode("<|im_end|>\u0338x"), (std::vector<int>{3002, 136, 116, 87}));
  EXPECT_EQ(t.encode("a<|im_end|>\u0301"), (std::vector<int>{64, 3002, 136, 223}));
  EXPECT_EQ(t.encode("e<|im_end|>\u0301"), (std::vector<int>{68, 3002, 136, 223}));
  EXPECT_EQ(t.encode("\u1100<|im_end|>\u1161"), (std::vector<int>{157, 226, 222, 3002, 157, 227, 94}));
  EXPECT_EQ(t.encode("e\u0301"), std::vector<int>{906});
}

// Added tokens with normalized true are matched by their NFC form in the normalised text, after the
// normalized-false ones were cut from the raw text. Ids from tokenizers 0.23.3 on qwen2-style plus
// 3003 "xqe\u0301" (normalized), 3004 "qe\u0301" (not), 3005 "<n\u00c5>" (normalized).
TEST(TokenizerQwen2Style, NormalizedAddedTokensMatchAfterNfc) {
  TempDir dir("tokenizer");
  std::ifstream in(style_dir("qwen2-style") / "tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(in);
  const auto added = [&](int id, const std::string& content, bool normalized) {
    j["added_tokens"].push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                                 {"rstrip", false}, {"normalized", normalized}, {"special", false}});
  };
  added(3003, "xqe\u0301", true);
  added(3004, "qe\u0301", false);
  added(3005, "<n\u00c5>", true);
  std::ofstream(dir.path() / "tokenizer.json") << j.dump();
  const Tokenizer t = Tokenizer::from_tokenizer_json(dir.path() / "tokenizer.json");
  EXPECT_EQ(t.encode("xqe\u0301"), (std::vector<int>{87, 3004}));
  EXPECT_EQ(t.encode("xq\u00e9"), (std::vector<int>{3003}));
  EXPECT_EQ(t.encode("xq\u00e9 qe\u0301"), (std::vector<int>{3003, 220, 3004}));
  EXPECT_EQ(t.encode("xqe\u0301\u0301"), (std::vector<int>{87, 3004, 136, 223}));
  EXPECT_EQ(t.encode("<nA\u030a>"), (std::vector<int>{3005}));
  EXPECT_EQ(t.encode("<n\u212b>"), (std::vector<int>{3005}));
  EXPECT_EQ(t.encode("<|im_end|><n\u212b><|im_start|>"), (std::vector<int>{3002, 3005, 3001}));
}

TEST(TokenizerQwen2Style, SplitRegexMatchesHuggingFace) { expect_pieces_match(PreTokenizeStep::Qwen2Regex, "qwen2-style"); }

// A tokenizer.json of the 256 byte tokens, <s> (id 256) and </s> (257), with the given post-processor,
// normalizer and tokenizer_config.json (none if null).
fs::path tiny_tokenizer(const TempDir& dir, const nlohmann::json& post_processor, const nlohmann::json& config,
                        const nlohmann::json& normalizer = nullptr) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_token_char(static_cast<std::uint8_t>(b))] = b;
  const nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"normalizer", normalizer},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", post_processor},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array({{{"id", 256}, {"content", "<s>"}, {"special", true}},
                                              {{"id", 257}, {"content", "</s>"}, {"special", true}}})}};
  std::ofstream(dir.path() / "tokenizer.json") << j.dump();
  fs::remove(dir.path() / "tokenizer_config.json");
  if (!config.is_null()) std::ofstream(dir.path() / "tokenizer_config.json") << config.dump();
  return dir.path() / "tokenizer.json";
}

nlohmann::json template_processing(const nlohmann::json& single) {
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", nlohmann::json::array()},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}},
                              {"</s>", {{"id", "</s>"}, {"ids", {257}}, {"tokens", {"</s>"}}}}}}};
}

TEST(TokenizerJson, PostProcessorTemplateSetsAddBos) {
  TempDir dir("tokenizer");
  const nlohmann::json bos_a = nlohmann::json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}});
  const nlohmann::json just_a = nlohmann::json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}});
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  // Llama 3's shape, no tokenizer_config.json: BOS and add_bos from the template.
  Tokenizer t = Tokenizer::load(tiny_tokenizer(dir, {{"type", "Sequence"}, {"processors", {byte_level, template_processing(bos_a)}}}, nullptr));
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.bos_id(), 256);
  EXPECT_EQ(t.encode("hi"), (std::vector<int>{'h', 'i'}));  // encode adds nothing itself
  // tokenizer_config.json's add_bos_token wins.
  t = Tokenizer::load(tiny_tokenizer(dir, template_processing(bos_a), {{"bos_token", "<s>"}, {"add_bos_token", false}}));
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.bos_id(), 256);
  t = Tokenizer::load(tiny_tokenizer(dir, template_processing(just_a), {{"bos_token", "<s>"}, {"add_bos_token", true}}));
  EXPECT_TRUE(t.add_bos());
  // No template, or one without a special token: no BOS.
  t = Tokenizer::load(tiny_tokenizer(dir, byte_level, {{"bos_token", "<s>"}}));
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.bos_id(), 256);
  t = Tokenizer::load(tiny_tokenizer(dir, template_processing(just_a), nullptr));
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.bos_id(), -1);
}

TEST(TokenizerErrors, PostProcessorsThatAddOtherTokens) {
  TempDir dir("tokenizer");
  const nlohmann::json s = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  const nlohmann::json e = {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}};
  const nlohmann::json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  // A trailing EOS, two leading tokens, BERT's processor: HF would add tokens encode() + add_bos() cannot.
  expect_config_error([&] { Tokenizer::load(tiny_tokenizer(dir, template_processing({s, a, e}), nullptr)); }, "tokenizer.json", "post_processor.single");
  expect_config_error([&] { Tokenizer::load(tiny_tokenizer(dir, template_processing({s, e, a}), nullptr)); }, "tokenizer.json", "post_processor.single");
  expect_config_error([&] { Tokenizer::load(tiny_tokenizer(dir, {{"type", "BertProcessing"}, {"sep", {"</s>", 257}}, {"cls", {"<s>", 256}}}, nullptr)); },
                      "tokenizer.json", "post_processor.type");
  // The template's token is not the configured BOS.
  expect_config_error([&] { Tokenizer::load(tiny_tokenizer(dir, template_processing({e, a}), {{"bos_token", "<s>"}})); }, "tokenizer.json", "post_processor");
}

TEST(TokenizerJson, NormalizerNfcAloneOrInASequence) {
  TempDir dir("tokenizer");
  const nlohmann::json nfc = {{"type", "NFC"}};
  EXPECT_FALSE(Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr)).applies_nfc());
  EXPECT_TRUE(Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr, nfc)).applies_nfc());
  EXPECT_TRUE(Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr, {{"type", "Sequence"}, {"normalizers", nlohmann::json::array({nfc})}})).applies_nfc());
  EXPECT_FALSE(Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr, {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}})).applies_nfc());
  const Tokenizer t = Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr, nfc));
  EXPECT_EQ(t.encode("e\u0301"), (std::vector<int>{0xC3, 0xA9}));
  EXPECT_EQ(t.encode("<s>\u0338"), (std::vector<int>{256, 0xCC, 0xB8}));  // <s> is cut out before NFC
}

TEST(TokenizerErrors, UnsupportedNormalizers) {
  TempDir dir("tokenizer");
  const auto load = [&](const nlohmann::json& normalizer) { Tokenizer::load(tiny_tokenizer(dir, nullptr, nullptr, normalizer)); };
  for (const char* type : {"NFD", "NFKC", "NFKD", "Lowercase", "Strip", "Prepend", "Replace", "BertNormalizer", ""})
    expect_config_error([&] { load({{"type", type}}); }, "tokenizer.json", "normalizer.type");
  expect_config_error([&] { load({{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}}); },
                      "tokenizer.json", "normalizer.normalizers[1].type");
}

// A GGUF holding only tokenizer metadata: tokenizer.ggml.model `model`, and with `pre` given, that
// pre-tokenizer with the 256 byte tokens and no merges.
fs::path tokenizer_gguf(const TempDir& dir, const std::string& name, const std::string& model, const std::string& pre) {
  const fs::path f = dir.path() / name;
  std::string b = "GGUF";
  const auto raw = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
  };
  const auto str = [&](const std::string& s) {
    raw(s.size(), 8);
    b += s;
  };
  raw(3, 4), raw(0, 8), raw(pre.empty() ? 2 : 5, 8);
  str("general.architecture"), raw(8, 4), str(pre.empty() ? "llama" : "qwen2");
  str("tokenizer.ggml.model"), raw(8, 4), str(model);
  if (!pre.empty()) {
    str("tokenizer.ggml.pre"), raw(8, 4), str(pre);
    str("tokenizer.ggml.tokens"), raw(9, 4), raw(8, 4), raw(256, 8);
    for (int t = 0; t < 256; ++t) str(byte_to_token_char(static_cast<std::uint8_t>(t)));
    str("tokenizer.ggml.merges"), raw(9, 4), raw(8, 4), raw(0, 8);
  }
  while (b.size() % 32) b.push_back('\0');
  std::ofstream(f, std::ios::binary) << b;
  return f;
}

fs::path byte_gguf(const TempDir& dir, const std::string& pre) { return tokenizer_gguf(dir, pre + ".gguf", "gpt2", pre); }

// transformers' GGUF loader gives Qwen2 GGUFs Qwen2's NFC normalizer back; others get none.
TEST(TokenizerGguf, Qwen2PreTokenizerAppliesNfc) {
  TempDir dir("tokenizer");
  const Tokenizer qwen2 = Tokenizer::from_gguf(GgufFile(byte_gguf(dir, "qwen2")));
  EXPECT_TRUE(qwen2.applies_nfc());
  EXPECT_EQ(qwen2.encode("e\u0301"), (std::vector<int>{0xC3, 0xA9}));
  const Tokenizer llama3 = Tokenizer::from_gguf(GgufFile(byte_gguf(dir, "llama-bpe")));
  EXPECT_FALSE(llama3.applies_nfc());
  EXPECT_EQ(llama3.encode("e\u0301"), (std::vector<int>{'e', 0xCC, 0x81}));
}

TEST(TokenizerErrors, GgufWithoutTokenizer) {
  const fs::path f = fs::path(SPECONTEXT_FIXTURES_DIR) / "gguf" / "llama-gqa-f32.gguf";
  expect_config_error([&] { Tokenizer::from_gguf(GgufFile(f)); }, "llama-gqa-f32.gguf", "tokenizer.ggml.model");
}

TEST(TokenizerErrors, GgufWithSentencePieceTokenizer) {
  TempDir dir("tokenizer");
  const fs::path f = tokenizer_gguf(dir, "spm.gguf", "llama", "");
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
