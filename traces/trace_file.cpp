#include "traces/trace_file.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>

namespace specontext::traces {

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'S', 'P', 'C', 'T', 'R', 'A', 'C', 'E'};
// Tags are the ASCII bytes of "STEP" and "END!" read as a little-endian u32, so a hex dump shows them.
constexpr std::uint32_t kStepTag = 0x50455453;
constexpr std::uint32_t kEndTag = 0x21444E45;
constexpr const char* kFormatName = "specontext-trace";
// An fp32 softmax may come out a hair above 1, and binary16 rounds 1 + 1e-3 to 1 + 2^-10.
constexpr float kMaxProbability = 1.0f + 1e-3f;

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw TraceError(where + ": " + what); }

// CRC-32 (IEEE 802.3, reflected: zlib's), one table entry per byte value.
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

// ---- header JSON ---------------------------------------------------------------------------------

// Typed fields of the header object (or of one of its policies, `prefix` "policies[2]"); errors read
// "<origin>: header field '<prefix.key>': <what>".
class HeaderFields {
 public:
  HeaderFields(const nlohmann::json& j, std::string origin, std::string prefix = "")
      : j_(j), origin_(std::move(origin)), prefix_(std::move(prefix)) {
    if (!j_.is_object())
      throw TraceError(origin_ + (prefix_.empty() ? ": header" : ": header field '" + prefix_ + "'") +
                       ": must be a JSON object");
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw TraceError(origin_ + ": header field '" + (prefix_.empty() ? key : prefix_ + "." + key) + "': " + what);
  }

  const nlohmann::json& raw(const std::string& key) const {
    if (!j_.contains(key)) fail(key, "missing");
    return j_.at(key);
  }

  std::string string(const std::string& key) const {
    const auto& v = raw(key);
    if (!v.is_string()) fail(key, "must be a string");
    return v.get<std::string>();
  }

  bool boolean(const std::string& key) const {
    const auto& v = raw(key);
    if (!v.is_boolean()) fail(key, "must be true or false");
    return v.get<bool>();
  }

  // An integer in [min, max], min 0 or 1: the message says "non-negative" or "positive".
  std::int64_t integer(const std::string& key, std::int64_t min, std::int64_t max) const {
    const auto& v = raw(key);
    const std::string kind = min > 0 ? "must be a positive integer" : "must be a non-negative integer";
    if (!v.is_number_integer()) fail(key, kind);
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max))
      fail(key, "must be at most " + std::to_string(max));
    const auto value = v.get<std::int64_t>();
    if (value < min) fail(key, kind + ", got " + std::to_string(value));
    if (value > max) fail(key, "must be at most " + std::to_string(max));
    return value;
  }

  int positive_int(const std::string& key) const {
    return static_cast<int>(integer(key, 1, std::numeric_limits<int>::max()));
  }

 private:
  const nlohmann::json& j_;
  std::string origin_, prefix_;
};

// ---- little-endian bytes -------------------------------------------------------------------------

template <typename T>
void put(std::string& out, T value) {
  const auto u = static_cast<std::make_unsigned_t<T>>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}

template <typename T>
T get(const unsigned char* p) {
  using U = std::make_unsigned_t<T>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
  return static_cast<T>(u);
}

std::string encode_payload(const StepRecord& r) {
  std::size_t size = 16;
  for (const auto& a : r.attention) size += 4 + 6 * a.positions.size();
  for (const auto& policy : r.rankings)
    for (const auto& list : policy) size += 4 + 4 * list.size();
  std::string out;
  out.reserve(size);
  put<std::int32_t>(out, r.request);
  put<std::int32_t>(out, r.step);
  put<std::int64_t>(out, r.position);
  for (const auto& a : r.attention) {
    put<std::uint32_t>(out, static_cast<std::uint32_t>(a.positions.size()));
    for (auto p : a.positions) put<std::uint32_t>(out, static_cast<std::uint32_t>(p));
    for (auto q : a.probabilities) put<std::uint16_t>(out, float_to_half(q));
  }
  for (const auto& policy : r.rankings)
    for (const auto& list : policy) {
      put<std::uint32_t>(out, static_cast<std::uint32_t>(list.size()));
      for (auto p : list) put<std::uint32_t>(out, static_cast<std::uint32_t>(p));
    }
  return out;
}

// Reads a record's payload; running past its end means the payload's size disagrees with its counts.
class PayloadCursor {
 public:
  PayloadCursor(const std::string& payload, std::string where)
      : p_(reinterpret_cast<const unsigned char*>(payload.data())), left_(payload.size()), size_(payload.size()),
        where_(std::move(where)) {}

  void set_where(std::string where) { where_ = std::move(where); }
  std::size_t left() const { return left_; }

  void need(std::uint64_t bytes, const std::string& what) const {
    if (bytes > left_)
      fail(where_, "payload size inconsistent with its contents: " + what + " needs " + std::to_string(bytes) +
                       " more bytes, " + std::to_string(left_) + " of the payload's " + std::to_string(size_) +
                       " are left");
  }

  template <typename T>
  T take(const std::string& what) {
    need(sizeof(T), what);
    const T v = get<T>(p_);
    p_ += sizeof(T);
    left_ -= sizeof(T);
    return v;
  }

  // `n` positions, each of which must fit the in-memory int32.
  std::vector<std::int32_t> positions(std::uint32_t n, const std::string& what) {
    need(4ull * n, what);
    std::vector<std::int32_t> out(n);
    for (auto& p : out) {
      const auto u = take<std::uint32_t>(what);
      if (u > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max()))
        fail(where_, what + ": position " + std::to_string(u) + " is out of range");
      p = static_cast<std::int32_t>(u);
    }
    return out;
  }

 private:
  const unsigned char* p_;
  std::size_t left_, size_;
  std::string where_;
};

// ---- record checks -------------------------------------------------------------------------------

std::string record_where(const std::string& file, std::int64_t index, const StepRecord& r) {
  return file + ": record " + std::to_string(index) + " (request " + std::to_string(r.request) + ", step " +
         std::to_string(r.step) + ")";
}

std::string attention_label(const TraceHeader& h, std::size_t index) {
  return "attention[layer " + std::to_string(index / h.kv_heads) + ", head " + std::to_string(index % h.kv_heads) +
         "]";
}

// The layer and the KV head one list of a policy applies to; nullopt: all of them.
struct ListScope {
  std::optional<int> layer, head;
};

ListScope list_scope(const TraceHeader& h, const TracePolicy& policy, std::size_t list) {
  ListScope s;
  const int heads_per_list = policy.head_level ? h.kv_heads : 1;
  if (policy.per_layer) s.layer = static_cast<int>(list) / heads_per_list;
  if (policy.head_level) s.head = static_cast<int>(list) % h.kv_heads;
  return s;
}

std::string ranking_label(const TracePolicy& policy, const ListScope& s) {
  std::string label = "rankings[policy '" + policy.name + "'";
  if (s.layer) label += ", layer " + std::to_string(*s.layer);
  if (s.head) label += ", head " + std::to_string(*s.head);
  return label + "]";
}

// A list's positions, each checked to lie in 0..t and to appear once, sorted ascending.
std::vector<std::int32_t> sorted_positions(const std::vector<std::int32_t>& list, std::int64_t t,
                                           const std::string& where) {
  for (auto p : list) {
    if (p < 0) fail(where, "position " + std::to_string(p) + " is negative");
    if (p > t) fail(where, "position " + std::to_string(p) + " is past the entering token " + std::to_string(t));
  }
  std::vector<std::int32_t> sorted = list;
  std::sort(sorted.begin(), sorted.end());
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end())
    fail(where, "position " + std::to_string(*dup) + " appears twice");
  return sorted;
}

// The first element of sorted `subset` missing from sorted `set`, if any.
std::optional<std::int32_t> first_missing(const std::vector<std::int32_t>& subset, const std::vector<std::int32_t>& set) {
  auto it = set.begin();
  for (auto p : subset) {
    while (it != set.end() && *it < p) ++it;
    if (it == set.end() || *it != p) return p;
  }
  return std::nullopt;
}

StepRecord decode_payload(const TraceHeader& h, const std::string& payload, const std::string& file,
                          std::int64_t index) {
  PayloadCursor c(payload, file + ": record " + std::to_string(index));
  StepRecord r;
  r.request = c.take<std::int32_t>("the request");
  r.step = c.take<std::int32_t>("the step");
  r.position = c.take<std::int64_t>("the position");
  c.set_where(record_where(file, index, r));
  // Entries are appended as they are read (no up-front sizing from the header), so a damaged file
  // fails on its payload's size rather than on an allocation.
  const std::size_t heads = static_cast<std::size_t>(h.layers) * h.kv_heads;
  for (std::size_t i = 0; i < heads; ++i) {
    const std::string label = attention_label(h, i);
    const auto n = c.take<std::uint32_t>(label);
    c.need(6ull * n, label);
    HeadAttention a;
    a.positions = c.positions(n, label);
    a.probabilities.resize(n);
    for (auto& q : a.probabilities) q = half_to_float(c.take<std::uint16_t>(label));
    r.attention.push_back(std::move(a));
  }
  for (const auto& policy : h.policies) {
    auto& lists = r.rankings.emplace_back();
    const int count = policy.lists(h.layers, h.kv_heads);
    for (int l = 0; l < count; ++l) {
      const std::string label = ranking_label(policy, list_scope(h, policy, l));
      lists.push_back(c.positions(c.take<std::uint32_t>(label), label));
    }
  }
  if (c.left() != 0)
    fail(record_where(file, index, r), "payload size inconsistent with its contents: " + std::to_string(c.left()) +
                                           " bytes past its last list");
  return r;
}

// ---- files ---------------------------------------------------------------------------------------

void emit(std::ofstream& out, const char* data, std::size_t size, const fs::path& path) {
  out.write(data, static_cast<std::streamsize>(size));
  if (!out) fail(path.string(), "write failed");
}

// Reads a trace file front to back, knowing how many bytes are left (the truncation checks).
class FileReader {
 public:
  FileReader(const fs::path& path, std::uint64_t size) : in_(path, std::ios::binary), left_(size), file_(path.string()) {
    if (!in_) fail(file_, "cannot open");
  }

  std::uint64_t left() const { return left_; }

  std::string bytes(std::uint64_t n) {
    std::string out(n, '\0');
    in_.read(out.data(), static_cast<std::streamsize>(n));
    if (!in_) fail(file_, "read error");
    left_ -= n;
    return out;
  }

  template <typename T>
  T take() {
    const std::string b = bytes(sizeof(T));
    return get<T>(reinterpret_cast<const unsigned char*>(b.data()));
  }

 private:
  std::ifstream in_;
  std::uint64_t left_;
  std::string file_;
};

}  // namespace

// ---- binary16, CRC-32, FNV-1a --------------------------------------------------------------------

std::uint16_t float_to_half(float value) {
  const auto x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  const std::uint32_t abs = x & 0x7FFFFFFF;
  if (abs >= 0x7F800000) return sign | (abs > 0x7F800000 ? 0x7E00 : 0x7C00);  // NaN (quiet), infinity
  if (abs >= 0x477FF000) return sign | 0x7C00;  // >= 65520, halfway past 65504: rounds to infinity
  if (abs < 0x33000000) return sign;            // < 2^-25, below half the smallest subnormal: zero
  if (abs < 0x38800000) {                       // < 2^-14: a subnormal, in units of 2^-24
    const std::uint32_t mantissa = (abs & 0x7FFFFF) | 0x800000;
    const std::uint32_t shift = 126 - (abs >> 23);  // value = mantissa * 2^(exp - 150) = units * 2^-24
    std::uint32_t h = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1))) ++h;  // may carry into the smallest normal: right
    return sign | static_cast<std::uint16_t>(h);
  }
  // A normal: rebias the exponent (127 -> 15) and keep the top 10 mantissa bits, rounding the other 13.
  std::uint32_t h = (abs >> 13) - ((127 - 15) << 10);
  const std::uint32_t rest = abs & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // a carry bumps the exponent, as it should
  return sign | static_cast<std::uint16_t>(h);
}

float half_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  if (exponent == 0) {  // zero or a subnormal: mantissa * 2^-24, exact in fp32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000 | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

std::uint32_t crc32(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string fnv1a64_hex(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[15 - i] = kDigits[(h >> (4 * i)) & 0xF];
  return out;
}

// ---- header --------------------------------------------------------------------------------------

nlohmann::json to_json(const TraceHeader& h) {
  nlohmann::json policies = nlohmann::json::array();
  for (const auto& p : h.policies)
    policies.push_back({{"name", p.name}, {"per_layer", p.per_layer}, {"head_level", p.head_level}, {"page_size", p.page_size}});
  return {{"format", kFormatName},
          {"version", kTraceVersion},
          {"model", h.model},
          {"draft", h.draft},
          {"task", h.task},
          {"prompt_source", h.prompt_source},
          {"backend", h.backend},
          {"config_hash", h.config_hash},
          {"layers", h.layers},
          {"q_heads", h.q_heads},
          {"kv_heads", h.kv_heads},
          {"head_dim", h.head_dim},
          {"b_max", h.b_max},
          {"prompt_tokens", h.prompt_tokens},
          {"max_new", h.max_new},
          {"requests", h.requests},
          {"policies", std::move(policies)},
          {"extra", h.extra}};
}

TraceHeader header_from_json(const nlohmann::json& j, const std::string& origin) {
  const HeaderFields f(j, origin);
  constexpr auto kInt64Max = std::numeric_limits<std::int64_t>::max();
  if (f.string("format") != kFormatName) f.fail("format", std::string("must be \"") + kFormatName + "\"");
  if (const auto v = f.integer("version", 0, kInt64Max); v != kTraceVersion)
    f.fail("version", "must be " + std::to_string(kTraceVersion) + ", got " + std::to_string(v));
  TraceHeader h;
  h.model = f.string("model");
  h.draft = f.string("draft");
  h.task = f.string("task");
  h.prompt_source = f.string("prompt_source");
  h.backend = f.string("backend");
  h.config_hash = f.string("config_hash");
  h.layers = f.positive_int("layers");
  h.q_heads = f.positive_int("q_heads");
  h.kv_heads = f.positive_int("kv_heads");
  h.head_dim = f.positive_int("head_dim");
  h.b_max = f.integer("b_max", 1, std::numeric_limits<std::int32_t>::max());  // positions are 32-bit
  h.prompt_tokens = f.integer("prompt_tokens", 0, kInt64Max);
  h.max_new = f.integer("max_new", 0, kInt64Max);
  h.requests = static_cast<int>(f.integer("requests", 0, std::numeric_limits<int>::max()));
  if (h.q_heads % h.kv_heads != 0)
    f.fail("q_heads", "must be a multiple of kv_heads (" + std::to_string(h.q_heads) + " query heads, " +
                          std::to_string(h.kv_heads) + " KV heads)");
  const auto& policies = f.raw("policies");
  if (!policies.is_array()) f.fail("policies", "must be an array");
  std::set<std::string> names;
  for (std::size_t i = 0; i < policies.size(); ++i) {
    const HeaderFields pf(policies[i], origin, "policies[" + std::to_string(i) + "]");
    TracePolicy p;
    p.name = pf.string("name");
    if (p.name.empty()) pf.fail("name", "must not be empty");
    if (!names.insert(p.name).second) pf.fail("name", "duplicate policy name '" + p.name + "'");
    p.per_layer = pf.boolean("per_layer");
    p.head_level = pf.boolean("head_level");
    p.page_size = pf.positive_int("page_size");
    h.policies.push_back(std::move(p));
  }
  h.extra = f.raw("extra");
  if (!h.extra.is_object()) f.fail("extra", "must be a JSON object");
  return h;
}

// ---- records -------------------------------------------------------------------------------------

void check_record(const TraceHeader& h, const StepRecord& r, const std::string& where) {
  const std::int64_t t = r.position;
  if (r.request < 0) fail(where, "request " + std::to_string(r.request) + " is negative");
  if (r.step < 0) fail(where, "step " + std::to_string(r.step) + " is negative");
  if (t < 0) fail(where, "the entering token's position " + std::to_string(t) + " is negative");

  const std::size_t heads = static_cast<std::size_t>(h.layers) * h.kv_heads;
  if (r.attention.size() != heads)
    fail(where, "attention holds " + std::to_string(r.attention.size()) + " entries, expected layers * kv_heads = " +
                    std::to_string(heads));
  const std::int64_t shortest = std::min<std::int64_t>(h.b_max, t + 1);
  std::vector<std::vector<std::int32_t>> stored(heads);  // each entry's positions, sorted (ranking checks)
  for (std::size_t i = 0; i < heads; ++i) {
    const auto& a = r.attention[i];
    const std::string label = where + ": " + attention_label(h, i);
    if (a.positions.size() != a.probabilities.size())
      fail(label, std::to_string(a.positions.size()) + " positions but " + std::to_string(a.probabilities.size()) +
                      " probabilities");
    for (std::size_t k = 0; k < a.probabilities.size(); ++k) {
      const float q = a.probabilities[k];
      if (!(q >= 0.0f && q <= kMaxProbability))
        fail(label, "probability " + std::to_string(q) + " of position " + std::to_string(a.positions[k]) +
                        " is outside [0, 1]");
      if (k > 0 && q > a.probabilities[k - 1])
        fail(label, "probabilities are not sorted descending: position " + std::to_string(a.positions[k]) + " (" +
                        std::to_string(q) + ") follows position " + std::to_string(a.positions[k - 1]) + " (" +
                        std::to_string(a.probabilities[k - 1]) + ")");
    }
    stored[i] = sorted_positions(a.positions, t, label);
    if (!std::binary_search(stored[i].begin(), stored[i].end(), t))
      fail(label, "does not hold the entering token " + std::to_string(t));
    if (static_cast<std::int64_t>(a.positions.size()) < shortest)
      fail(label, "holds " + std::to_string(a.positions.size()) + " positions, fewer than min(b_max, t + 1) = " +
                      std::to_string(shortest));
  }

  if (r.rankings.size() != h.policies.size())
    fail(where, "rankings hold " + std::to_string(r.rankings.size()) + " policies, the header names " +
                    std::to_string(h.policies.size()));
  for (std::size_t p = 0; p < h.policies.size(); ++p) {
    const auto& policy = h.policies[p];
    const auto& lists = r.rankings[p];
    const auto expected = static_cast<std::size_t>(policy.lists(h.layers, h.kv_heads));
    if (lists.size() != expected)
      fail(where + ": rankings[policy '" + policy.name + "']",
           std::to_string(lists.size()) + " lists, expected " + std::to_string(expected) + " (per_layer " +
               (policy.per_layer ? "true" : "false") + ", head_level " + (policy.head_level ? "true" : "false") + ")");
    // A paged policy selects whole pages, so its ranking may run to the end of the page holding b_max.
    const std::int64_t pages = (h.b_max + policy.page_size - 1) / policy.page_size;
    const std::int64_t longest = policy.page_size == 1 ? h.b_max : pages * policy.page_size;
    for (std::size_t l = 0; l < lists.size(); ++l) {
      const ListScope scope = list_scope(h, policy, l);
      const std::string label = where + ": " + ranking_label(policy, scope);
      const auto& list = lists[l];
      if (static_cast<std::int64_t>(list.size()) > longest)
        fail(label, std::to_string(list.size()) + " positions, more than " +
                        (policy.page_size == 1 ? "b_max = " + std::to_string(h.b_max)
                                               : "ceil(b_max / page_size) = " + std::to_string(pages) + " pages = " +
                                                     std::to_string(longest) + " positions"));
      const auto sorted = sorted_positions(list, t, label);
      // Every ranked position is stored in the attention of each head the list applies to, so the
      // replay's attention mass of any selection is exact.
      for (int layer = 0; layer < h.layers; ++layer) {
        if (scope.layer && layer != *scope.layer) continue;
        for (int head = 0; head < h.kv_heads; ++head) {
          if (scope.head && head != *scope.head) continue;
          const std::size_t index = static_cast<std::size_t>(layer) * h.kv_heads + head;
          if (const auto missing = first_missing(sorted, stored[index]))
            fail(label, "position " + std::to_string(*missing) + " is not in " + attention_label(h, index) +
                            " (every ranked position must be stored)");
        }
      }
    }
  }
}

// ---- writer --------------------------------------------------------------------------------------

TraceWriter::TraceWriter(const std::filesystem::path& path, TraceHeader header)
    : path_(path), header_(std::move(header)) {
  const std::string file = path_.string();
  const nlohmann::json j = to_json(header_);
  header_from_json(j, file);  // the reader's checks, before anything is written
  std::string text;
  try {
    text = j.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(file, std::string("header cannot be written as JSON: ") + e.what());
  }
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) fail(file, "cannot open for writing");
  std::string head(kMagic, sizeof kMagic);
  put<std::uint32_t>(head, kTraceVersion);
  put<std::uint64_t>(head, text.size());
  head += text;
  emit(out_, head.data(), head.size(), path_);
  bytes_ = static_cast<std::int64_t>(head.size());
}

TraceWriter::~TraceWriter() {
  if (closed_) return;
  try {
    close();
  } catch (...) {
    // A destructor must not throw; a caller who needs to know calls close().
  }
}

void TraceWriter::write(const StepRecord& record) {
  if (closed_) fail(path_.string(), "write after close");
  check_record(header_, record, record_where(path_.string(), records_, record));
  const std::string payload = encode_payload(record);
  std::string prefix, crc;
  put<std::uint32_t>(prefix, kStepTag);
  put<std::uint64_t>(prefix, payload.size());
  put<std::uint32_t>(crc, crc32(payload.data(), payload.size()));
  emit(out_, prefix.data(), prefix.size(), path_);
  emit(out_, payload.data(), payload.size(), path_);
  emit(out_, crc.data(), crc.size(), path_);
  bytes_ += static_cast<std::int64_t>(prefix.size() + payload.size() + crc.size());
  ++records_;
}

void TraceWriter::close() {
  if (closed_) return;
  closed_ = true;  // a failed close is not retried by the destructor
  std::string trailer;
  put<std::uint32_t>(trailer, kEndTag);
  put<std::uint64_t>(trailer, static_cast<std::uint64_t>(records_));
  emit(out_, trailer.data(), trailer.size(), path_);
  bytes_ += static_cast<std::int64_t>(trailer.size());
  out_.close();
  if (out_.fail()) fail(path_.string(), "write failed (closing)");
}

// ---- reader --------------------------------------------------------------------------------------

Trace read_trace(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) fail(file, "cannot open (" + ec.message() + ")");
  FileReader f(path, size);

  if (f.left() < sizeof kMagic || f.bytes(sizeof kMagic) != std::string(kMagic, sizeof kMagic))
    fail(file, "not a specontext trace (no SPCTRACE magic)");
  if (f.left() < 4 + 8) fail(file, "truncated header");
  if (const auto version = f.take<std::uint32_t>(); version != kTraceVersion)
    fail(file, "unsupported trace version " + std::to_string(version) + " (this build reads version " +
                   std::to_string(kTraceVersion) + ")");
  const auto header_bytes = f.take<std::uint64_t>();
  if (header_bytes > f.left())
    fail(file, "truncated header: " + std::to_string(header_bytes) + " bytes of JSON announced, " +
                   std::to_string(f.left()) + " left in the file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f.bytes(header_bytes));
  } catch (const nlohmann::json::parse_error& e) {
    fail(file, std::string("header is not valid JSON: ") + e.what());
  }
  Trace trace;
  trace.header = header_from_json(j, file);

  for (std::int64_t index = 0;; ++index) {
    if (f.left() < 4)
      fail(file, "truncated: no END! trailer after " +
                     (index == 0 ? std::string("the header") : "record " + std::to_string(index - 1)));
    const auto tag = f.take<std::uint32_t>();
    if (tag == kEndTag) {
      if (f.left() < 8)
        fail(file, "truncated: END! trailer cut short (" + std::to_string(f.left()) + " of its 8 count bytes)");
      const auto count = f.take<std::uint64_t>();
      if (count != static_cast<std::uint64_t>(index))
        fail(file, "END! trailer counts " + std::to_string(count) + " records, the file holds " + std::to_string(index));
      if (f.left() != 0) fail(file, std::to_string(f.left()) + " bytes after the END! trailer");
      break;
    }
    const std::string where = file + ": record " + std::to_string(index);
    if (tag != kStepTag) {
      char hex[11];
      std::snprintf(hex, sizeof hex, "0x%08X", tag);
      fail(where, std::string("tag ") + hex + " is neither STEP nor END!");
    }
    if (f.left() < 8) fail(where, "truncated: its payload size is cut short");
    const auto payload_bytes = f.take<std::uint64_t>();
    if (payload_bytes > f.left() || f.left() - payload_bytes < 4)
      fail(where, "truncated: " + std::to_string(payload_bytes) + " bytes of payload and 4 of CRC announced, " +
                      std::to_string(f.left()) + " left in the file");
    const std::string payload = f.bytes(payload_bytes);
    if (f.take<std::uint32_t>() != crc32(payload.data(), payload.size())) fail(where, "CRC mismatch (corrupt)");
    StepRecord record = decode_payload(trace.header, payload, file, index);
    check_record(trace.header, record, record_where(file, index, record));
    trace.steps.push_back(std::move(record));
  }
  return trace;
}

}  // namespace specontext::traces
