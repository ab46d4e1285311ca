// Attention-trace files (traces/): a written trace reads back equal (probabilities within binary16
// rounding), the binary16, CRC-32 and FNV-1a building blocks against known answers, and every kind
// of bad file or bad record refused with a message naming the file, the record and what is wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/temp_dir.hpp"
#include "traces/trace_file.hpp"

namespace specontext::traces {
namespace {

namespace fs = std::filesystem;
using specontext::testing::TempDir;

// 2 layers, 2 KV heads of 2 query heads each, b_max 8, and the three shapes of ranking: one per KV
// head shared by the layers (2 lists), per layer and head in pages of 4 (4 lists), one for the batch (1).
TraceHeader small_header() {
  TraceHeader h;
  h.model = "tiny-llama";
  h.draft = "tiny-draft";
  h.task = "passkey";
  h.prompt_source = "seed 7, context 64";
  h.backend = "cpu";
  h.config_hash = fnv1a64_hex("{\"layers\": 2}");
  h.layers = 2;
  h.q_heads = 4;
  h.kv_heads = 2;
  h.head_dim = 16;
  h.b_max = 8;
  h.prompt_tokens = 40;
  h.max_new = 3;
  h.requests = 2;
  h.policies = {{"specontext", false, true, 1}, {"quest", true, true, 4}, {"specontext-batch", false, false, 1}};
  h.extra = {{"answers", {"12345", "67890"}}};
  return h;
}

// A valid record at position t: random rankings, and per head a random softmax over 0..t of which
// the top b_max, t and every ranked position are stored (sorted by probability, ties lower first).
StepRecord make_record(const TraceHeader& h, int request, int step, std::int32_t t, unsigned seed) {
  std::mt19937 rng(seed);
  StepRecord r;
  r.request = request;
  r.step = step;
  r.position = t;
  std::set<std::int32_t> ranked;
  for (const auto& policy : h.policies) {
    auto& lists = r.rankings.emplace_back();
    for (int l = 0; l < policy.lists(h.layers, h.kv_heads); ++l) {
      std::vector<std::int32_t> list;
      if (policy.page_size == 1) {
        list.resize(t + 1);
        std::iota(list.begin(), list.end(), 0);
        std::shuffle(list.begin(), list.end(), rng);
        list.resize(std::min<std::size_t>(list.size(), h.b_max));
      } else {
        std::vector<std::int32_t> pages(t / policy.page_size + 1);
        std::iota(pages.begin(), pages.end(), 0);
        std::shuffle(pages.begin(), pages.end(), rng);
        pages.resize(std::min<std::size_t>(pages.size(), (h.b_max + policy.page_size - 1) / policy.page_size));
        for (auto page : pages)
          for (std::int32_t p = page * policy.page_size; p < (page + 1) * policy.page_size && p <= t; ++p) list.push_back(p);
      }
      ranked.insert(list.begin(), list.end());
      lists.push_back(std::move(list));
    }
  }
  std::normal_distribution<float> logit(0.0f, 4.0f);  // wide: some probabilities come out subnormal in binary16
  for (int i = 0; i < h.layers * h.kv_heads; ++i) {
    std::vector<float> w(t + 1);
    for (auto& x : w) x = std::exp(logit(rng));
    const float sum = std::accumulate(w.begin(), w.end(), 0.0f);
    for (auto& x : w) x /= sum;
    std::vector<std::int32_t> order(t + 1);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return w[a] > w[b]; });
    HeadAttention a;
    for (std::size_t k = 0; k < order.size(); ++k) {
      const auto p = order[k];
      if (static_cast<std::int64_t>(k) < h.b_max || p == t || ranked.count(p)) {
        a.positions.push_back(p);
        a.probabilities.push_back(w[p]);
      }
    }
    r.attention.push_back(std::move(a));
  }
  return r;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
T get_le(const std::string& b, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return static_cast<T>(v);
}

template <typename T>
void set_le(std::string& b, std::size_t at, T value) {
  const auto v = static_cast<std::uint64_t>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

// Asserts that `f` throws a TraceError whose message holds every one of `parts`.
void expect_trace_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a TraceError, nothing was thrown";
  } catch (const TraceError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' missing from: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a TraceError, got: " << e.what();
  }
}

// A written trace of three records (t = 5 < b_max, 20, 41) and where each record starts in the file.
struct WrittenTrace {
  fs::path path;
  TraceHeader header;
  std::vector<StepRecord> records;
  std::vector<std::size_t> record_offsets;
  std::int64_t bytes = 0;
};

WrittenTrace write_small_trace(const fs::path& path) {
  WrittenTrace w{path, small_header(), {}, {}, 0};
  w.records = {make_record(w.header, 0, 0, 5, 1), make_record(w.header, 1, 0, 20, 2), make_record(w.header, 0, 1, 41, 3)};
  TraceWriter writer(path, w.header);
  for (const auto& r : w.records) {
    w.record_offsets.push_back(static_cast<std::size_t>(writer.bytes()));
    writer.write(r);
  }
  writer.close();
  w.bytes = writer.bytes();
  return w;
}

// Rewrites record `index`'s payload in `bytes` through `edit` with a fresh size and CRC, so only the
// reader's checks of the contents stand between the edit and a successful read.
void rewrite_payload(std::string& bytes, std::size_t record_offset, const std::function<void(std::string&)>& edit) {
  const auto size = get_le<std::uint64_t>(bytes, record_offset + 4);
  std::string payload = bytes.substr(record_offset + 12, size);
  edit(payload);
  std::string record;
  record.resize(12);
  set_le<std::uint32_t>(record, 0, get_le<std::uint32_t>(bytes, record_offset));
  set_le<std::uint64_t>(record, 4, payload.size());
  record += payload;
  record.resize(record.size() + 4);
  set_le<std::uint32_t>(record, record.size() - 4, crc32(payload.data(), payload.size()));
  bytes.replace(record_offset, 12 + size + 4, record);
}

}  // namespace

TEST(TraceFile, RoundTrip) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  EXPECT_EQ(static_cast<std::int64_t>(fs::file_size(w.path)), w.bytes);

  const Trace got = read_trace(w.path);
  EXPECT_EQ(to_json(got.header), to_json(w.header));
  EXPECT_EQ(got.header.b_max, 8);
  ASSERT_EQ(got.header.policies.size(), 3u);
  EXPECT_EQ(got.header.policies[1].page_size, 4);
  EXPECT_TRUE(got.header.policies[1].per_layer);
  EXPECT_FALSE(got.header.policies[2].head_level);
  ASSERT_EQ(got.steps.size(), w.records.size());
  for (std::size_t i = 0; i < w.records.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    const auto& want = w.records[i];
    const auto& step = got.steps[i];
    EXPECT_EQ(step.request, want.request);
    EXPECT_EQ(step.step, want.step);
    EXPECT_EQ(step.position, want.position);
    EXPECT_EQ(step.rankings, want.rankings);
    ASSERT_EQ(step.attention.size(), want.attention.size());
    for (std::size_t a = 0; a < want.attention.size(); ++a) {
      EXPECT_EQ(step.attention[a].positions, want.attention[a].positions);
      ASSERT_EQ(step.attention[a].probabilities.size(), want.attention[a].probabilities.size());
      for (std::size_t k = 0; k < want.attention[a].probabilities.size(); ++k) {
        const float q = want.attention[a].probabilities[k];
        EXPECT_LE(std::fabs(step.attention[a].probabilities[k] - q), std::ldexp(1.0f, -11) * q + 6e-8f)
            << "attention " << a << ", entry " << k;
      }
    }
  }
  // t = 5 < b_max: every position 0..5 is stored.
  EXPECT_EQ(got.steps[0].attention[0].positions.size(), 6u);
}

TEST(TraceFile, HalfFloatKnownValues) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(0.5f), 0x3800);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);                  // the largest finite half
  EXPECT_EQ(float_to_half(65520.0f), 0x7C00);                  // halfway past it: infinity
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);     // the smallest normal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -20)), 0x0010);     // a subnormal: 16 units of 2^-24
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);     // the smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);     // half of it: a tie, to even (zero)
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);     // above the tie
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 units: a tie, to even (2)
  EXPECT_EQ(float_to_half(0.0f), 0x0000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie between 0x3C00 and 0x3C01: even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie between 0x3C01 and 0x3C02: even
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);  // past the tie
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_TRUE(std::isinf(half_to_float(0x7C00)));
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
}

TEST(TraceFile, HalfFloatRoundTripsEveryHalf) {
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0) continue;  // NaN payloads are not kept
    ASSERT_EQ(float_to_half(half_to_float(h)), h) << std::hex << bits;
  }
}

TEST(TraceFile, Crc32KnownAnswer) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(crc32("", 0), 0u);
  EXPECT_EQ(crc32("The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
}

TEST(TraceFile, Fnv1a64KnownAnswers) {
  EXPECT_EQ(fnv1a64_hex(""), "cbf29ce484222325");
  EXPECT_EQ(fnv1a64_hex("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(fnv1a64_hex("foobar"), "85944171f73967e8");
}

TEST(TraceFile, RejectsTruncatedFile) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  const std::string bytes = read_bytes(w.path);
  const auto cut = dir.path() / "cut.trace";

  write_bytes(cut, bytes.substr(0, bytes.size() - 5));  // inside the trailer's record count
  expect_trace_error([&] { read_trace(cut); }, {cut.string(), "truncated", "END!"});
  write_bytes(cut, bytes.substr(0, bytes.size() - 12));  // no trailer at all
  expect_trace_error([&] { read_trace(cut); }, {cut.string(), "truncated: no END! trailer after record 2"});
  write_bytes(cut, bytes.substr(0, w.record_offsets[1] + 100));  // in the middle of record 1's payload
  expect_trace_error([&] { read_trace(cut); }, {cut.string(), "record 1", "truncated"});
  write_bytes(cut, bytes.substr(0, w.record_offsets[0] - 3));  // inside the header's JSON
  expect_trace_error([&] { read_trace(cut); }, {cut.string(), "truncated header"});
}

TEST(TraceFile, RejectsCorruptPayload) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  std::string bytes = read_bytes(w.path);
  bytes[w.record_offsets[1] + 12 + 40] ^= 0x10;
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "record 1: CRC mismatch (corrupt)"});
}

TEST(TraceFile, RejectsBadMagicAndVersion) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  const std::string good = read_bytes(w.path);

  std::string bytes = good;
  bytes[0] = 'X';
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "not a specontext trace"});

  bytes = good;
  set_le<std::uint32_t>(bytes, 8, 99);
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "unsupported trace version 99"});

  write_bytes(w.path, "");
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "not a specontext trace"});
}

TEST(TraceFile, RejectsBadHeader) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  const std::string good = read_bytes(w.path);
  const auto json_bytes = get_le<std::uint64_t>(good, 12);
  // The same file with its header's JSON replaced by `text`.
  auto with_header = [&](const std::string& text) {
    std::string bytes = good.substr(0, 12);
    bytes.resize(20);
    set_le<std::uint64_t>(bytes, 12, text.size());
    write_bytes(w.path, bytes + text + good.substr(20 + json_bytes));
  };

  nlohmann::json j = to_json(w.header);
  j.erase("b_max");
  with_header(j.dump());
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "header field 'b_max': missing"});

  with_header("{\"format\": ");
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "header is not valid JSON"});

  j = to_json(w.header);
  j["b_max"] = "8";
  with_header(j.dump());
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "header field 'b_max': must be a positive integer"});

  // The checks on the header's values, without a file.
  auto expect_field = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& message) {
    nlohmann::json e = to_json(small_header());
    edit(e);
    expect_trace_error([&] { header_from_json(e, "x.trace"); }, {"x.trace: header field " + message});
  };
  expect_field([](auto& e) { e["b_max"] = 0; }, "'b_max': must be a positive integer");
  expect_field([](auto& e) { e["layers"] = -2; }, "'layers': must be a positive integer");
  expect_field([](auto& e) { e["q_heads"] = 5; }, "'q_heads': must be a multiple of kv_heads");
  expect_field([](auto& e) { e["kv_heads"] = 2.0; }, "'kv_heads': must be a positive integer");
  expect_field([](auto& e) { e["model"] = 3; }, "'model': must be a string");
  expect_field([](auto& e) { e["format"] = "other"; }, "'format'");
  expect_field([](auto& e) { e["version"] = 2; }, "'version': must be 1");
  expect_field([](auto& e) { e["policies"][1]["page_size"] = 0; }, "'policies[1].page_size': must be a positive integer");
  expect_field([](auto& e) { e["policies"][2]["name"] = "quest"; }, "'policies[2].name': duplicate policy name 'quest'");
  expect_field([](auto& e) { e["policies"][0].erase("head_level"); }, "'policies[0].head_level': missing");
  expect_field([](auto& e) { e["extra"] = 1; }, "'extra': must be a JSON object");
  EXPECT_EQ(to_json(header_from_json(to_json(small_header()), "x.trace")), to_json(small_header()));
}

TEST(TraceFile, RejectsBadFileStructure) {
  TempDir dir("trace-file");
  const auto w = write_small_trace(dir.path() / "small.trace");
  const std::string good = read_bytes(w.path);

  write_bytes(w.path, good + "x");
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "1 bytes after the END! trailer"});

  std::string bytes = good;
  set_le<std::uint64_t>(bytes, bytes.size() - 8, 7);
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "END! trailer counts 7 records, the file holds 3"});

  bytes = good;
  set_le<std::uint32_t>(bytes, w.record_offsets[2], 0x50455454);
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "record 2", "neither STEP nor END!"});

  // Four bytes more than the contents: the CRC is right, the size is not.
  bytes = good;
  rewrite_payload(bytes, w.record_offsets[1], [](std::string& p) { p += std::string(4, '\0'); });
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {"record 1 (request 1, step 0)", "payload size inconsistent", "4 bytes past"});

  // Cut before its last list.
  bytes = good;
  rewrite_payload(bytes, w.record_offsets[1], [](std::string& p) { p.resize(p.size() - 4); });
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {"record 1 (request 1, step 0)", "payload size inconsistent", "rankings[policy 'specontext-batch']"});

  // The reader checks the decoded record too: t lowered below stored positions.
  bytes = good;
  rewrite_payload(bytes, w.record_offsets[2], [](std::string& p) { set_le<std::int64_t>(p, 8, 30); });
  write_bytes(w.path, bytes);
  expect_trace_error([&] { read_trace(w.path); }, {w.path.string(), "record 2 (request 0, step 1): attention[layer 0, head 0]", "is past the entering token 30"});
}

TEST(TraceFile, RejectsMissingFile) {
  TempDir dir("trace-file");
  const auto missing = dir.path() / "no-such.trace";
  expect_trace_error([&] { read_trace(missing); }, {missing.string(), "cannot open"});
  expect_trace_error([&] { TraceWriter(dir.path() / "no-such-folder" / "x.trace", small_header()); },
                     {"no-such-folder/x.trace", "cannot open for writing"});
  auto bad = small_header();
  bad.kv_heads = 3;
  expect_trace_error([&] { TraceWriter(dir.path() / "bad.trace", bad); }, {"bad.trace: header field 'q_heads'"});
}

TEST(TraceFile, WriterRefusesBadRecords) {
  TempDir dir("trace-file");
  const auto path = dir.path() / "refused.trace";
  const auto h = small_header();
  TraceWriter writer(path, h);
  const StepRecord good = make_record(h, 1, 2, 200, 9);  // t well past every ranked position
  auto expect_refused = [&](const std::function<void(StepRecord&)>& edit, const std::vector<std::string>& parts) {
    StepRecord r = good;
    edit(r);
    std::vector<std::string> all = {path.string() + ": record 0 (request 1, step 2): "};
    all.insert(all.end(), parts.begin(), parts.end());
    expect_trace_error([&] { writer.write(r); }, all);
  };

  expect_refused([](auto& r) { r.rankings[1][3][0] = 201; },
                 {"rankings[policy 'quest', layer 1, head 1]: position 201 is past the entering token 200"});
  // A position stored for head 0 only, ranked by the shared list of head 1.
  expect_refused(
      [](auto& r) {
        auto& list = r.rankings[0][1];
        const auto& stored = r.attention[1].positions;
        list.clear();
        for (std::int32_t p = 0; p <= 200 && list.empty(); ++p)
          if (std::find(stored.begin(), stored.end(), p) == stored.end()) list.push_back(p);
        ASSERT_FALSE(list.empty());
      },
      {"rankings[policy 'specontext', head 1]: position", "is not in attention[layer 0, head 1]"});
  expect_refused([](auto& r) { r.rankings[2][0][1] = r.rankings[2][0][0]; },
                 {"rankings[policy 'specontext-batch']: position", "appears twice"});
  expect_refused([](auto& r) { r.rankings[0][0].push_back(r.rankings[1][0][0]); }, {"rankings[policy 'specontext', head 0]: 9 positions, more than b_max = 8"});
  // Paged: whole pages up to ceil(8 / 4) = 2 pages; a third page's first position is one too many.
  expect_refused([](auto& r) { r.rankings[1][0].push_back(r.rankings[0][0][0]); },
                 {"rankings[policy 'quest', layer 0, head 0]: 9 positions, more than ceil(b_max / page_size) = 2 pages = 8 positions"});
  expect_refused([](auto& r) { r.attention[3].positions[1] = r.attention[3].positions[0]; },
                 {"attention[layer 1, head 1]: position", "appears twice"});
  expect_refused([](auto& r) { std::swap(r.attention[2].probabilities[0], r.attention[2].probabilities[1]); },
                 {"attention[layer 1, head 0]: probabilities are not sorted descending"});
  expect_refused([](auto& r) { r.attention[0].probabilities[0] = 1.5f; }, {"attention[layer 0, head 0]: probability", "outside [0, 1]"});
  expect_refused([](auto& r) { r.attention[0].probabilities.pop_back(); }, {"attention[layer 0, head 0]", "positions but"});
  expect_refused([](auto& r) { r.attention.pop_back(); }, {"attention holds 3 entries, expected layers * kv_heads = 4"});
  expect_refused([](auto& r) { r.rankings[1].pop_back(); }, {"rankings[policy 'quest']: 3 lists, expected 4"});
  expect_refused(
      [](auto& r) {
        auto& a = r.attention[1];
        const auto at = std::find(a.positions.begin(), a.positions.end(), 200) - a.positions.begin();
        a.positions.erase(a.positions.begin() + at);
        a.probabilities.erase(a.probabilities.begin() + at);
      },
      {"attention[layer 0, head 1]: does not hold the entering token 200"});
  EXPECT_EQ(writer.records(), 0);
  writer.write(good);  // a refusal leaves the writer usable
  writer.close();
  EXPECT_EQ(read_trace(path).steps.size(), 1u);
  expect_trace_error([&] { writer.write(good); }, {"write after close"});
}

TEST(TraceFile, DestructorWritesTrailer) {
  TempDir dir("trace-file");
  const auto path = dir.path() / "unclosed.trace";
  const auto h = small_header();
  {
    TraceWriter writer(path, h);
    writer.write(make_record(h, 0, 0, 12, 4));
    writer.write(make_record(h, 0, 1, 13, 5));
  }
  const Trace got = read_trace(path);
  ASSERT_EQ(got.steps.size(), 2u);
  EXPECT_EQ(got.steps[1].position, 13);
}

}  // namespace specontext::traces
