#include "engine/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <queue>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/gguf.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;

struct CodepointRange {
  char32_t first, last;
};
struct CodepointValue {
  char32_t first, last;
  std::uint8_t value;
};
struct Decomposition {
  char32_t cp, first, second;
};
#include "engine/unicode_tables.inc"

template <std::size_t N>
bool in_ranges(const CodepointRange (&table)[N], char32_t c) {
  const auto it = std::upper_bound(std::begin(table), std::end(table), c,
                                   [](char32_t v, const CodepointRange& r) { return v < r.first; });
  return it != std::begin(table) && c <= std::prev(it)->last;
}

// The value of the range holding c, 0 where none does.
template <std::size_t N>
std::uint8_t range_value(const CodepointValue (&table)[N], char32_t c) {
  const auto it = std::upper_bound(std::begin(table), std::end(table), c,
                                   [](char32_t v, const CodepointValue& r) { return v < r.first; });
  return it != std::begin(table) && c <= std::prev(it)->last ? std::prev(it)->value : 0;
}

enum class Cls : std::uint8_t { Letter, Number, Space, Other };

// A decoded character and where its bytes are; an invalid byte is one Other character.
struct Char {
  char32_t cp;
  std::uint32_t begin, end;
  Cls cls;
};

Cls classify(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return Cls::Letter;
    if (c >= '0' && c <= '9') return Cls::Number;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return Cls::Space;
    return Cls::Other;
  }
  if (in_ranges(kLetterRanges, c)) return Cls::Letter;
  if (in_ranges(kNumberRanges, c)) return Cls::Number;
  if (in_ranges(kWhiteSpaceRanges, c)) return Cls::Space;
  return Cls::Other;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t* cp) {
  const auto b = [&](std::size_t k) { return static_cast<std::uint8_t>(s[k]); };
  const std::uint8_t c0 = b(i);
  if (c0 < 0x80) {
    *cp = c0;
    return 1;
  }
  std::size_t n;
  std::uint8_t lo = 0x80, hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    n = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    n = 3;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    n = 4;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + 1 >= s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (i + k >= s.size() || b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  char32_t v = c0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) v = (v << 6) | (b(i + k) & 0x3F);
  *cp = v;
  return n;
}

std::vector<Char> decode_chars(std::string_view s) {
  std::vector<Char> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, &cp);
    if (n == 0) {
      out.push_back({0xFFFD, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i + 1), Cls::Other});
      ++i;
      continue;
    }
    out.push_back({cp, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i + n), classify(cp)});
    i += n;
  }
  return out;
}

// ---- NFC (UAX #15) with HF tokenizers' Unicode 9.0 data (unicode_tables.py) ----

// An invalid UTF-8 byte b stands in the buffers as kRawByte | b: a starter that composes with nothing.
constexpr char32_t kRawByte = 0x80000000u;
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kSCount = kLCount * kVCount * kTCount;

std::uint8_t combining_class(char32_t c) { return c < 0x300 ? 0 : range_value(kCombiningClassRanges, c); }

const Decomposition* find_decomposition(char32_t c) {
  if (c < 0xC0) return nullptr;
  const auto it = std::lower_bound(std::begin(kCanonicalDecompositions), std::end(kCanonicalDecompositions), c,
                                   [](const Decomposition& d, char32_t v) { return d.cp < v; });
  return it != std::end(kCanonicalDecompositions) && it->cp == c ? &*it : nullptr;
}

struct Mark {
  char32_t cp;
  std::uint8_t ccc;
};

// Appends c's full canonical decomposition, each character put in canonical order among the
// non-starters before it (a stable insertion by combining class).
void decompose_into(char32_t c, std::vector<Mark>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back({kLBase + s / (kVCount * kTCount), 0});
    out.push_back({kVBase + (s % (kVCount * kTCount)) / kTCount, 0});
    if (s % kTCount != 0) out.push_back({kTBase + s % kTCount, 0});
    return;
  }
  if (const Decomposition* d = find_decomposition(c)) {
    decompose_into(d->first, out);
    if (d->second != 0) decompose_into(d->second, out);
    return;
  }
  const std::uint8_t ccc = (c & kRawByte) != 0 ? 0 : combining_class(c);
  std::size_t k = out.size();
  if (ccc != 0)
    while (k > 0 && out[k - 1].ccc > ccc) --k;
  out.insert(out.begin() + static_cast<std::ptrdiff_t>(k), Mark{c, ccc});
}

// The primary composite of a + b, or 0.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  // (a << 32 | b) -> composite, from the two-character decompositions that are not excluded.
  static const std::vector<std::pair<std::uint64_t, char32_t>> pairs = [] {
    std::vector<std::pair<std::uint64_t, char32_t>> v;
    for (const Decomposition& d : kCanonicalDecompositions)
      if (d.second != 0 && !std::binary_search(std::begin(kCompositionExclusions), std::end(kCompositionExclusions), d.cp))
        v.emplace_back((static_cast<std::uint64_t>(d.first) << 32) | d.second, d.cp);
    std::sort(v.begin(), v.end());
    return v;
  }();
  if ((a | b) & kRawByte) return 0;
  const std::uint64_t key = (static_cast<std::uint64_t>(a) << 32) | b;
  const auto it = std::lower_bound(pairs.begin(), pairs.end(), key,
                                   [](const std::pair<std::uint64_t, char32_t>& p, std::uint64_t k) { return p.first < k; });
  return it != pairs.end() && it->first == key ? it->second : 0;
}

// UAX #15's quick check answering Yes: every character NFC_Quick_Check Yes and the combining classes
// in canonical order. Text it passes is its own NFC (ASCII and most text); No or Maybe needs the full
// algorithm.
bool nfc_quick_yes(std::string_view s) {
  std::uint8_t last = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<std::uint8_t>(s[i]);
    if (b < 0xCC) {  // ASCII, continuation or C2..CB lead bytes: U+0000..U+02FF are all Yes, class 0
      last = 0;
      ++i;
      continue;
    }
    char32_t cp = 0;
    const std::size_t n = utf8_sequence(s, i, &cp);
    if (n == 0) {  // an invalid byte: a starter
      last = 0;
      ++i;
      continue;
    }
    i += n;
    const std::uint8_t ccc = combining_class(cp);
    if ((ccc != 0 && last > ccc) || range_value(kNfcQuickCheckRanges, cp) != 0) return false;
    last = ccc;
  }
  return true;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp & kRawByte) {
    out.push_back(static_cast<char>(cp & 0xFF));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Full NFC: canonical decomposition in canonical order, then canonical composition.
std::string nfc_full(std::string_view s) {
  std::vector<Mark> buf;
  buf.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const std::size_t n = utf8_sequence(s, i, &cp);
    if (n == 0) {
      decompose_into(kRawByte | static_cast<std::uint8_t>(s[i]), buf);
      ++i;
    } else {
      decompose_into(cp, buf);
      i += n;
    }
  }
  // Compose each character with the last starter unless blocked: something between them has class 0
  // or a class >= its own. The kept characters after the starter are non-starters in canonical
  // order, so the last of them has the largest class.
  std::size_t kept = 0;
  std::ptrdiff_t starter = -1;
  for (std::size_t i = 0; i < buf.size(); ++i) {
    const Mark m = buf[i];
    if (starter >= 0) {
      const bool adjacent = kept == static_cast<std::size_t>(starter) + 1;
      if (adjacent || buf[kept - 1].ccc < m.ccc) {
        if (const char32_t c = compose_pair(buf[starter].cp, m.cp); c != 0) {
          buf[starter].cp = c;
          continue;
        }
      }
    }
    if (m.ccc == 0) starter = static_cast<std::ptrdiff_t>(kept);
    buf[kept++] = m;
  }
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t k = 0; k < kept; ++k) append_utf8(buf[k].cp, out);
  return out;
}

bool is_cr_lf(const Char& c) { return c.cp == '\r' || c.cp == '\n'; }

// Where the contraction alternative ('s|'t|'re|'ve|'m|'ll|'d) matching at i ends, or i.
std::size_t contraction(const std::vector<Char>& c, std::size_t i, bool ignore_case) {
  if (c[i].cp != '\'' || i + 1 >= c.size()) return i;
  const auto lower = [&](std::size_t k) -> char32_t {
    if (k >= c.size()) return 0;
    char32_t v = c[k].cp;
    if (ignore_case) {
      if (v >= 'A' && v <= 'Z') v += 'a' - 'A';
      if (v == 0x17F) v = 's';  // LATIN SMALL LETTER LONG S case-folds to s
      if (v == 0x212A) v = 'k';
    }
    return v;
  };
  const char32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  const char32_t b = lower(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  return i;
}

std::size_t run_of(const std::vector<Char>& c, std::size_t i, Cls cls) {
  while (i < c.size() && c[i].cls == cls) ++i;
  return i;
}

// \s+(?!\S)|\s+ at a whitespace character i.
std::size_t whitespace_tail(const std::vector<Char>& c, std::size_t i) {
  const std::size_t j = run_of(c, i, Cls::Space);
  if (j == c.size()) return j;
  return j - 1 > i ? j - 1 : j;
}

// End of the GPT-2 pattern's match at i (always > i).
std::size_t match_gpt2(const std::vector<Char>& c, std::size_t i) {
  if (std::size_t e = contraction(c, i, false); e > i) return e;
  const bool space = c[i].cp == ' ' && i + 1 < c.size();
  for (Cls cls : {Cls::Letter, Cls::Number, Cls::Other}) {
    if (space && c[i + 1].cls == cls) return run_of(c, i + 1, cls);
    if (c[i].cls == cls) return run_of(c, i, cls);
  }
  return whitespace_tail(c, i);
}

// End of the Llama 3 (max_digits 3) or Qwen2 (max_digits 1) pattern's match at i.
std::size_t match_llama3(const std::vector<Char>& c, std::size_t i, std::size_t max_digits) {
  if (std::size_t e = contraction(c, i, true); e > i) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c[i].cls != Cls::Letter && c[i].cls != Cls::Number && !is_cr_lf(c[i]) && i + 1 < c.size() &&
      c[i + 1].cls == Cls::Letter)
    return run_of(c, i + 1, Cls::Letter);
  if (c[i].cls == Cls::Letter) return run_of(c, i, Cls::Letter);
  // \p{N}{1,max}
  if (c[i].cls == Cls::Number) {
    std::size_t j = i;
    while (j < c.size() && j - i < max_digits && c[j].cls == Cls::Number) ++j;
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  {
    std::size_t j = i;
    if (c[j].cp == ' ' && j + 1 < c.size() && c[j + 1].cls == Cls::Other) ++j;
    if (c[j].cls == Cls::Other) {
      j = run_of(c, j, Cls::Other);
      while (j < c.size() && is_cr_lf(c[j])) ++j;
      return j;
    }
  }
  // \s*[\r\n]+ : the whitespace run up to its last \r or \n
  const std::size_t j = run_of(c, i, Cls::Space);
  for (std::size_t k = j; k > i; --k)
    if (is_cr_lf(c[k - 1])) return k;
  return whitespace_tail(c, i);
}

void apply_step(PreTokenizeStep step, std::string_view piece, std::vector<std::string>& out) {
  const std::vector<Char> c = decode_chars(piece);
  const auto emit = [&](std::size_t a, std::size_t b) {
    out.emplace_back(piece.substr(c[a].begin, c[b - 1].end - c[a].begin));
  };
  std::size_t i = 0;
  while (i < c.size()) {
    std::size_t e;
    switch (step) {
      case PreTokenizeStep::IndividualDigits:
        e = i + 1;
        if (c[i].cls != Cls::Number)
          while (e < c.size() && c[e].cls != Cls::Number) ++e;
        break;
      case PreTokenizeStep::Gpt2Regex: e = match_gpt2(c, i); break;
      case PreTokenizeStep::Llama3Regex: e = match_llama3(c, i, 3); break;
      case PreTokenizeStep::Qwen2Regex: e = match_llama3(c, i, 1); break;
      default: e = c.size();
    }
    emit(i, e);
    i = e;
  }
}

const std::array<std::string, 256>& byte_alphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      t[b] = s;
    }
    return t;
  }();
  return table;
}

// The byte a byte-alphabet character stands for, or -1.
int char_to_byte(char32_t cp) {
  static const std::unordered_map<char32_t, int> map = [] {
    std::unordered_map<char32_t, int> m;
    const auto& t = byte_alphabet();
    for (int b = 0; b < 256; ++b) {
      char32_t cp = 0;
      utf8_sequence(t[b], 0, &cp);
      m[cp] = b;
    }
    return m;
  }();
  const auto it = map.find(cp);
  return it == map.end() ? -1 : it->second;
}

bool in_byte_alphabet(std::string_view token) {
  for (const Char& c : decode_chars(token))
    if (char_to_byte(c.cp) < 0) return false;  // an invalid byte decodes to U+FFFD, not in the alphabet
  return true;
}

// A token's bytes as HF's ByteLevel decoder gives them: unmapped if every character is in the byte
// alphabet, else its UTF-8 as it stands.
void append_token_bytes(const std::string& token, std::string& out) {
  std::string bytes;
  for (const Char& c : decode_chars(token)) {
    const int b = char_to_byte(c.cp);
    if (b < 0) {
      out += token;
      return;
    }
    bytes.push_back(static_cast<char>(b));
  }
  out += bytes;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string(), "", "cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path.string(), "", std::string("not valid JSON: ") + e.what());
  }
}

const std::string kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// HF normalizer JSON -> whether it is NFC. Only NFC is supported, alone or in a Sequence (of NFCs);
// null or an empty Sequence is none.
void parse_normalizer(const std::string& origin, const std::string& field, const nlohmann::json& j, bool& nfc) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "NFC") {
    nfc = true;
  } else if (type == "Sequence") {
    const auto& list = j.at("normalizers");
    for (std::size_t k = 0; k < list.size(); ++k)
      parse_normalizer(origin, field + ".normalizers[" + std::to_string(k) + "]", list[k], nfc);
  } else {
    throw ConfigError(origin, field + ".type", "unsupported normalizer '" + type + "' (only NFC is supported): " + j.dump());
  }
}

// HF pre_tokenizer JSON -> steps.
void parse_pre_tokenizer(const std::string& origin, const std::string& field, const nlohmann::json& j,
                         std::vector<PreTokenizeStep>& steps) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    const auto& list = j.at("pretokenizers");
    for (std::size_t k = 0; k < list.size(); ++k)
      parse_pre_tokenizer(origin, field + ".pretokenizers[" + std::to_string(k) + "]", list[k], steps);
  } else if (type == "Digits") {
    if (!j.value("individual_digits", false))
      throw ConfigError(origin, field + ".individual_digits", "only Digits(individual_digits=true) is supported");
    steps.push_back(PreTokenizeStep::IndividualDigits);
  } else if (type == "ByteLevel") {
    if (j.value("add_prefix_space", false))
      throw ConfigError(origin, field + ".add_prefix_space", "ByteLevel with add_prefix_space=true is not supported");
    if (j.value("use_regex", true)) steps.push_back(PreTokenizeStep::Gpt2Regex);
  } else if (type == "Split") {
    const auto& pattern = j.at("pattern");
    const std::string regex = pattern.value("Regex", "");
    const std::string behavior = j.value("behavior", "");
    if (behavior != "Isolated" || j.value("invert", false))
      throw ConfigError(origin, field + ".behavior", "only Split with behavior Isolated (not inverted) is supported");
    if (regex == kGpt2Pattern) steps.push_back(PreTokenizeStep::Gpt2Regex);
    else if (regex == kLlama3Pattern) steps.push_back(PreTokenizeStep::Llama3Regex);
    else if (regex == kQwen2Pattern) steps.push_back(PreTokenizeStep::Qwen2Regex);
    else throw ConfigError(origin, field + ".pattern", "a split regex this tokenizer does not know: " + pattern.dump());
  } else {
    throw ConfigError(origin, field + ".type", "unsupported pre-tokenizer '" + type + "'");
  }
}

// HF post_processor JSON -> the id of the special token it puts before a single sequence, if any.
// ByteLevel only adjusts offsets; TemplateProcessing "$A" or "<special> $A" (Llama 3's
// "<|begin_of_text|> $A", possibly inside a Sequence) is what encode() + add_bos() can express.
// Anything that adds other tokens (a trailing EOS, BERT's [CLS]/[SEP]) is refused rather than dropped.
void parse_post_processor(const std::string& origin, const std::string& field, const nlohmann::json& j,
                          std::optional<int>& prefix) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    const auto& list = j.at("processors");
    for (std::size_t k = 0; k < list.size(); ++k)
      parse_post_processor(origin, field + ".processors[" + std::to_string(k) + "]", list[k], prefix);
  } else if (type == "ByteLevel") {
    // Offsets only; ids unchanged.
  } else if (type == "TemplateProcessing") {
    const auto& single = j.at("single");
    std::vector<std::string> before;
    bool seen_sequence = false;
    for (const auto& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
      } else if (item.contains("SpecialToken") && !seen_sequence) {
        before.push_back(item["SpecialToken"].at("id").get<std::string>());
      } else {
        throw ConfigError(origin, field + ".single", "a template that adds tokens after the text is not supported: " + single.dump());
      }
    }
    if (!seen_sequence || before.size() > 1 || (!before.empty() && prefix))
      throw ConfigError(origin, field + ".single", "only a template of $A after at most one special token is supported: " + single.dump());
    if (before.empty()) return;
    const auto& ids = j.at("special_tokens").at(before[0]).at("ids");
    if (ids.size() != 1)
      throw ConfigError(origin, field + ".special_tokens", "special token '" + before[0] + "' must stand for exactly one id");
    prefix = ids[0].get<int>();
  } else {
    throw ConfigError(origin, field + ".type", "unsupported post-processor '" + type + "'");
  }
}

std::optional<std::string> special_content(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (j[key].is_string()) return j[key].get<std::string>();
  if (j[key].is_object() && j[key].contains("content")) return j[key]["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

const char* to_string(PreTokenizeStep s) {
  switch (s) {
    case PreTokenizeStep::IndividualDigits: return "digits";
    case PreTokenizeStep::Gpt2Regex: return "gpt2-regex";
    case PreTokenizeStep::Llama3Regex: return "llama3-regex";
    case PreTokenizeStep::Qwen2Regex: return "qwen2-regex";
  }
  return "?";
}

std::vector<std::string> pre_tokenize(std::string_view text, const std::vector<PreTokenizeStep>& steps) {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.emplace_back(text);
  for (PreTokenizeStep step : steps) {
    std::vector<std::string> next;
    for (const std::string& p : pieces) apply_step(step, p, next);
    pieces = std::move(next);
  }
  return pieces;
}

const std::string& byte_to_token_char(std::uint8_t byte) { return byte_alphabet()[byte]; }

std::string normalize_nfc(std::string_view text) { return nfc_quick_yes(text) ? std::string(text) : nfc_full(text); }

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    char32_t cp = 0;
    if (const std::size_t n = utf8_sequence(bytes, i, &cp); n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
      continue;
    }
    // Skip the maximal prefix of a valid sequence (at least one byte) and write one U+FFFD.
    const auto b = [&](std::size_t k) { return static_cast<std::uint8_t>(bytes[k]); };
    const std::uint8_t c0 = b(i);
    std::size_t n = 0;
    std::uint8_t lo = 0x80, hi = 0xBF;
    if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
    else if (c0 >= 0xE0 && c0 <= 0xEF) n = 3, lo = c0 == 0xE0 ? 0xA0 : 0x80, hi = c0 == 0xED ? 0x9F : 0xBF;
    else if (c0 >= 0xF0 && c0 <= 0xF4) n = 4, lo = c0 == 0xF0 ? 0x90 : 0x80, hi = c0 == 0xF4 ? 0x8F : 0xBF;
    std::size_t used = 1;
    if (n > 0 && i + 1 < bytes.size() && b(i + 1) >= lo && b(i + 1) <= hi) {
      used = 2;
      while (used < n && i + used < bytes.size() && b(i + used) >= 0x80 && b(i + used) <= 0xBF) ++used;
    }
    out += "\xEF\xBF\xBD";
    i += used;
  }
  return out;
}

Tokenizer Tokenizer::load(const fs::path& model) {
  if (fs::is_directory(model)) {
    const fs::path json = model / "tokenizer.json";
    if (!fs::exists(json)) throw ConfigError(model.string(), "tokenizer.json", "the folder has no tokenizer.json");
    return from_tokenizer_json(json);
  }
  if (model.extension() == ".gguf") return from_gguf(GgufFile(model));
  if (model.extension() == ".json") return from_tokenizer_json(model);
  throw ConfigError(model.string(), "", "expected a .gguf file, a tokenizer.json or a folder holding one");
}

void Tokenizer::set_vocab(const std::string& origin, const std::string& field, std::vector<std::string> tokens) {
  id_to_token_ = std::move(tokens);
  token_to_id_.clear();
  token_to_id_.reserve(id_to_token_.size());
  for (std::size_t i = 0; i < id_to_token_.size(); ++i)
    if (!token_to_id_.emplace(id_to_token_[i], static_cast<int>(i)).second)
      throw ConfigError(origin, field, "token '" + id_to_token_[i] + "' appears twice (ids " +
                                           std::to_string(token_to_id_[id_to_token_[i]]) + " and " + std::to_string(i) + ")");
  added_kind_.assign(id_to_token_.size(), 0);
}

void Tokenizer::add_merge(const std::string& origin, const std::string& field, const std::string& a, const std::string& b) {
  const auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), im = token_to_id_.find(a + b);
  if (ia == token_to_id_.end() || ib == token_to_id_.end() || im == token_to_id_.end())
    throw ConfigError(origin, field, "merge '" + a + " " + b + "' uses or makes a token not in the vocabulary");
  const std::uint64_t key = (static_cast<std::uint64_t>(ia->second) << 32) | static_cast<std::uint32_t>(ib->second);
  // HF keeps the first rank of a pair listed twice.
  merges_.emplace(key, Merge{static_cast<int>(merges_.size()), im->second});
}

void Tokenizer::add_token(const std::string& origin, const std::string& field, int id, const std::string& content, bool special,
                          bool normalized) {
  if (id < 0) throw ConfigError(origin, field, "negative token id");
  if (content.empty()) throw ConfigError(origin, field, "an added token with empty content");
  if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
    id_to_token_.resize(id + 1);
    added_kind_.resize(id + 1, 0);
  }
  id_to_token_[id] = content;
  token_to_id_[content] = id;
  added_kind_[id] = special ? 2 : 1;
  added_.push_back({id, content, special, normalized});
}

void Tokenizer::finish() {
  // HF matches a normalized added token in the normalised text, so by its normalised content.
  split_raw_.clear();
  split_normalized_.clear();
  for (const AddedToken& a : added_) {
    if (a.normalized) split_normalized_.push_back({a.id, nfc_ ? normalize_nfc(a.content) : a.content});
    else split_raw_.push_back({a.id, a.content});
  }
  for (auto* list : {&split_raw_, &split_normalized_})
    std::stable_sort(list->begin(), list->end(), [](const SplitToken& a, const SplitToken& b) { return a.text.size() > b.text.size(); });
  byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    const auto it = token_to_id_.find(byte_to_token_char(static_cast<std::uint8_t>(b)));
    if (it != token_to_id_.end()) byte_ids_[b] = it->second;
  }
}

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
  const std::string origin = file.path().string();
  const std::string model_key = "tokenizer.ggml.model";
  if (!file.has(model_key))
    throw ConfigError(origin, model_key, "the file has no tokenizer metadata");
  const std::string model = file.string(model_key);
  if (model != "gpt2")
    throw ConfigError(origin, model_key, "tokenizer '" + model + "' is not supported; only byte-level BPE ('gpt2') is");
  Tokenizer t;
  t.source_ = origin;
  t.set_vocab(origin, "tokenizer.ggml.tokens", file.strings("tokenizer.ggml.tokens"));
  const std::vector<std::string> merges = file.strings("tokenizer.ggml.merges");
  for (std::size_t k = 0; k < merges.size(); ++k) {
    const std::size_t sp = merges[k].find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == merges[k].size() || merges[k].find(' ', sp + 1) != std::string::npos)
      throw ConfigError(origin, "tokenizer.ggml.merges", "entry " + std::to_string(k) + " '" + merges[k] + "' is not 'a b'");
    t.add_merge(origin, "tokenizer.ggml.merges", merges[k].substr(0, sp), merges[k].substr(sp + 1));
  }
  const std::string pre = file.has("tokenizer.ggml.pre") ? file.string("tokenizer.ggml.pre") : "default";
  // llama.cpp's pre-tokenizer names; each is the tokenizer.json of the models that use it.
  if (pre == "smollm") {
    t.steps_ = {PreTokenizeStep::IndividualDigits, PreTokenizeStep::Gpt2Regex};
  } else if (pre == "default" || pre == "gpt-2" || pre == "gpt2") {
    t.steps_ = {PreTokenizeStep::Gpt2Regex};
  } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "smaug-bpe" || pre == "dbrx" || pre == "falcon3") {
    t.steps_ = {PreTokenizeStep::Llama3Regex};
    t.ignore_merges_ = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "megrez") {
    t.steps_ = {PreTokenizeStep::Qwen2Regex};
    // Qwen2's tokenizer.json has an NFC normalizer, and transformers' GGUF loader (Qwen2Converter)
    // puts it back; the GGUF itself does not say.
    t.nfc_ = pre == "qwen2" || pre == "deepseek-r1-qwen";
  } else {
    throw ConfigError(origin, "tokenizer.ggml.pre", "pre-tokenizer '" + pre + "' is not supported");
  }
  if (file.has("tokenizer.ggml.token_type")) {
    const GgufValue& types = file.value("tokenizer.ggml.token_type");
    const auto* list = std::get_if<std::vector<GgufValue>>(&types.value);
    if (!list || list->size() != t.id_to_token_.size())
      throw ConfigError(origin, "tokenizer.ggml.token_type", "expected one integer per token, got " + types.describe());
    for (std::size_t i = 0; i < list->size(); ++i) {
      const GgufValue& v = (*list)[i];
      const std::int64_t type = std::holds_alternative<std::int64_t>(v.value) ? std::get<std::int64_t>(v.value)
                                : std::holds_alternative<std::uint64_t>(v.value) ? static_cast<std::int64_t>(std::get<std::uint64_t>(v.value))
                                                                                : -1;
      const std::string& tok = t.id_to_token_[i];
      // 3 CONTROL: special, as transformers' GGUF loader adds them (skipping ones spelled outside the
      // byte alphabet, which it calls llama.cpp mislabels); 4 USER_DEFINED: a plain added token.
      if (type == 3 && in_byte_alphabet(tok)) t.add_token(origin, "tokenizer.ggml.token_type", static_cast<int>(i), tok, true, false);
      if (type == 4) t.add_token(origin, "tokenizer.ggml.token_type", static_cast<int>(i), tok, false, false);
    }
  }
  const auto id_of = [&](const char* key) -> int {
    if (!file.has(key)) return -1;
    const std::int64_t v = file.integer(key);
    if (v < 0 || v >= static_cast<std::int64_t>(t.id_to_token_.size()))
      throw ConfigError(origin, key, "token id " + std::to_string(v) + " is outside the vocabulary");
    return static_cast<int>(v);
  };
  t.bos_id_ = id_of("tokenizer.ggml.bos_token_id");
  t.eos_id_ = id_of("tokenizer.ggml.eos_token_id");
  t.unk_id_ = id_of("tokenizer.ggml.unknown_token_id");
  t.pad_id_ = id_of("tokenizer.ggml.padding_token_id");
  if (file.has("tokenizer.ggml.add_bos_token")) t.add_bos_ = file.boolean("tokenizer.ggml.add_bos_token");
  if (file.has("tokenizer.chat_template")) t.chat_template_ = file.string("tokenizer.chat_template");
  t.finish();
  return t;
}

Tokenizer Tokenizer::from_tokenizer_json(const fs::path& path) {
  const std::string origin = path.string();
  const nlohmann::json j = read_json(path);
  Tokenizer t;
  t.source_ = origin;
  std::optional<int> template_bos;  // what the post-processor puts before the text
  try {
    const auto& model = j.at("model");
    if (model.value("type", "BPE") != "BPE") throw ConfigError(origin, "model.type", "only BPE models are supported");
    if (model.value("byte_fallback", false)) throw ConfigError(origin, "model.byte_fallback", "byte fallback is not supported");
    t.ignore_merges_ = model.value("ignore_merges", false);
    const auto& vocab = model.at("vocab");
    if (!vocab.is_object()) throw ConfigError(origin, "model.vocab", "expected an object of token: id");
    std::vector<std::string> tokens;
    for (const auto& [tok, id_json] : vocab.items()) {
      const std::int64_t id = id_json.get<std::int64_t>();
      if (id < 0 || id > std::numeric_limits<int>::max()) throw ConfigError(origin, "model.vocab", "token '" + tok + "' has a bad id");
      if (static_cast<std::size_t>(id) >= tokens.size()) tokens.resize(id + 1);
      tokens[id] = tok;
    }
    t.set_vocab(origin, "model.vocab", std::move(tokens));
    for (const auto& m : model.at("merges")) {
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos) throw ConfigError(origin, "model.merges", "entry '" + s + "' is not 'a b'");
        t.add_merge(origin, "model.merges", s.substr(0, sp), s.substr(sp + 1));
      } else {
        t.add_merge(origin, "model.merges", m.at(0).get<std::string>(), m.at(1).get<std::string>());
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto it = t.token_to_id_.find(model["unk_token"].get<std::string>());
      if (it != t.token_to_id_.end()) t.unk_id_ = t.bpe_unk_id_ = it->second;
    }
    parse_normalizer(origin, "normalizer", j.value("normalizer", nlohmann::json()), t.nfc_);
    parse_pre_tokenizer(origin, "pre_tokenizer", j.value("pre_tokenizer", nlohmann::json()), t.steps_);
    parse_post_processor(origin, "post_processor", j.value("post_processor", nlohmann::json()), template_bos);
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", "") != "ByteLevel")
      throw ConfigError(origin, "decoder", "only the ByteLevel decoder is supported");
    if (j.contains("added_tokens")) {
      for (const auto& a : j["added_tokens"]) {
        for (const char* flag : {"lstrip", "rstrip", "single_word"})
          if (a.value(flag, false))
            throw ConfigError(origin, std::string("added_tokens.") + flag, "added token '" + a.value("content", "") + "' sets " + flag + ", which is not supported");
        // HF's default for "normalized" (a field its files always spell out) is !special.
        const bool special = a.value("special", false);
        t.add_token(origin, "added_tokens", a.at("id").get<int>(), a.at("content").get<std::string>(), special,
                    a.value("normalized", !special));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(origin, "model", std::string("malformed tokenizer.json: ") + e.what());
  }
  const fs::path config_path = path.parent_path() / "tokenizer_config.json";
  const nlohmann::json c = fs::exists(config_path) ? read_json(config_path) : nlohmann::json::object();
  const auto id_for = [&](const char* key) -> int {
    const auto content = special_content(c, key);
    if (!content) return -1;
    const auto it = t.token_to_id_.find(*content);
    return it == t.token_to_id_.end() ? -1 : it->second;
  };
  t.bos_id_ = id_for("bos_token");
  t.eos_id_ = id_for("eos_token");
  t.pad_id_ = id_for("pad_token");
  if (const int unk = id_for("unk_token"); unk >= 0) t.unk_id_ = unk;
  if (c.contains("chat_template") && c["chat_template"].is_string()) t.chat_template_ = c["chat_template"].get<std::string>();
  // HF's encode (add_special_tokens) prepends the post-processor template's token; Llama 3 says it
  // only there (its tokenizer_config.json has no add_bos_token). An add_bos_token in
  // tokenizer_config.json wins, as transformers' Llama/Gemma tokenizers rebuild the template from it.
  if (template_bos) {
    if (*template_bos < 0 || *template_bos >= static_cast<int>(t.id_to_token_.size()))
      throw ConfigError(origin, "post_processor", "the template's token id " + std::to_string(*template_bos) + " is outside the vocabulary");
    if (t.bos_id_ < 0) t.bos_id_ = *template_bos;
    t.add_bos_ = true;
  }
  if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) t.add_bos_ = c["add_bos_token"].get<bool>();
  if (t.add_bos_ && template_bos && *template_bos != t.bos_id_)
    throw ConfigError(origin, "post_processor", "the template starts with token " + std::to_string(*template_bos) +
                                                    ", but bos_token is " + std::to_string(t.bos_id_));
  t.finish();
  return t;
}

const std::string& Tokenizer::token(int id) const {
  if (id < 0 || id >= vocab_size())
    throw std::invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(vocab_size()) + ")");
  return id_to_token_[id];
}

std::optional<int> Tokenizer::find(std::string_view token) const {
  const auto it = token_to_id_.find(std::string(token));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int id) const { return id >= 0 && id < vocab_size() && added_kind_[id] == 2; }
bool Tokenizer::is_added(int id) const { return id >= 0 && id < vocab_size() && added_kind_[id] != 0; }

void Tokenizer::bpe(std::string_view piece, std::vector<int>& out) const {
  if (ignore_merges_) {
    std::string spelled;
    for (char ch : piece) spelled += byte_to_token_char(static_cast<std::uint8_t>(ch));
    if (const auto it = token_to_id_.find(spelled); it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int> symbols;
  symbols.reserve(piece.size());
  for (char ch : piece) {
    const int id = byte_ids_[static_cast<std::uint8_t>(ch)];
    // HF: a character outside the vocabulary becomes unk, or is dropped when there is none.
    if (id >= 0) symbols.push_back(id);
    else if (bpe_unk_id_ >= 0) symbols.push_back(bpe_unk_id_);
  }
  // Merge the lowest-ranked adjacent pair, leftmost first, until none is left (HF's order): a heap
  // of candidate pairs over a linked list of symbols, stale entries skipped when popped.
  const std::size_t n = symbols.size();
  if (n < 2) {
    out.insert(out.end(), symbols.begin(), symbols.end());
    return;
  }
  std::vector<std::ptrdiff_t> prev(n), next(n);
  for (std::size_t k = 0; k < n; ++k) {
    prev[k] = static_cast<std::ptrdiff_t>(k) - 1;
    next[k] = k + 1 < n ? static_cast<std::ptrdiff_t>(k + 1) : -1;
  }
  struct Candidate {
    int rank;
    std::ptrdiff_t pos;
    int left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto consider = [&](std::ptrdiff_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const int a = symbols[pos], b = symbols[next[pos]];
    const auto it = merges_.find((static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b));
    if (it != merges_.end()) heap.push({it->second.rank, pos, a, b, it->second.merged});
  };
  std::vector<bool> alive(n, true);
  for (std::size_t k = 0; k + 1 < n; ++k) consider(static_cast<std::ptrdiff_t>(k));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const std::ptrdiff_t right = next[c.pos];
    if (!alive[c.pos] || right < 0 || symbols[c.pos] != c.left || symbols[right] != c.right) continue;
    symbols[c.pos] = c.merged;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
  for (std::size_t k = 0; k < n; ++k)
    if (alive[k]) out.push_back(symbols[k]);
}

namespace {

// Cuts the tokens out of text (leftmost, longest first as the list is sorted): their ids go to ids,
// the text between them (possibly empty) to gap, in order.
template <typename Token, typename Gap>
void split_on_tokens(std::string_view text, const std::vector<Token>& tokens, std::vector<int>& ids, const Gap& gap) {
  std::size_t start = 0;
  if (!tokens.empty()) {
    for (std::size_t i = 0; i < text.size();) {
      const Token* hit = nullptr;
      for (const Token& a : tokens)
        if (text.compare(i, a.text.size(), a.text) == 0) {
          hit = &a;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      gap(text.substr(start, i - start));
      ids.push_back(hit->id);
      i += hit->text.size();
      start = i;
    }
  }
  gap(text.substr(start));
}

}  // namespace

std::vector<int> Tokenizer::encode(std::string_view text) const {
  // HF's order: added tokens with normalized false are cut out of the raw text, the normalizer runs on
  // each piece between them, then normalized added tokens are cut out of its output, and the rest is
  // pre-tokenised and merged.
  std::vector<int> ids;
  const auto encode_plain = [&](std::string_view part) {
    for (const std::string& piece : pre_tokenize(part, steps_)) bpe(piece, ids);
  };
  const auto encode_normalized = [&](std::string_view part) { split_on_tokens(part, split_normalized_, ids, encode_plain); };
  split_on_tokens(text, split_raw_, ids, [&](std::string_view part) {
    if (nfc_ && !nfc_quick_yes(part)) encode_normalized(nfc_full(part));
    else encode_normalized(part);
  });
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool skip_special) const {
  // As HF: the model tokens between added tokens are decoded as one chunk, added tokens are written
  // as they stand.
  std::string result, chunk;
  for (int id : ids) {
    const std::string& tok = token(id);
    if (added_kind_[id] != 0) {
      if (skip_special && added_kind_[id] == 2) continue;
      result += utf8_lossy(chunk);
      chunk.clear();
      result += tok;
    } else {
      append_token_bytes(tok, chunk);
    }
  }
  result += utf8_lossy(chunk);
  return result;
}

}  // namespace specontext
