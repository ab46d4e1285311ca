#pragma once
// Attention traces (traces/FORMAT.md is the byte-level spec): what an LLM attended to at each decode
// step of a dense run, and how each recorded selection policy ranked the positions at that step, so
// that budgets, policies and hardware can be swept later without re-running the model
// (sim/trace_replay.hpp). One file = a versioned JSON header + one record per (request, decode step)
// + a trailer; every record carries a CRC-32, so a corrupt or truncated file is rejected with an
// error naming the file, the record and the field.
//
// Meaning of a record (request r, decode step s, the entering token at position t; positions 0..t):
//   attention[layer * kv_heads + g]  the LLM's dense attention of KV head g's group at that layer:
//       for each query head of the group the softmax over positions 0..t, then the mean over the
//       group's query heads; stored for a subset of positions, sorted by probability descending
//       (ties: lower position first): at least the top `b_max` positions (or all t + 1 if fewer),
//       plus every position any recorded ranking of this record lists, plus t. The mass of any set
//       of stored positions is therefore exact; an unstored position's probability is at most the
//       smallest stored one among the top b_max.
//   rankings[p][list]  policy p's ranking at this step (best first, at most b_max positions, no
//       duplicates, all in 0..t): lists are [layers][kv_heads] when the policy is per-layer and
//       head-level, [kv_heads] when shared by the layers and head-level, [layers] when per-layer
//       and batch-level, [1] when shared and batch-level (TracePolicy says which).
//   A budget-B selection of policy p is its ranking's first B positions (paged policies: the first
//   ceil(B / page_size) pages, i.e. positions of whole pages in rank order), plus t, which the
//   engine always attends.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace specontext::traces {

constexpr std::uint32_t kTraceVersion = 1;

// A bad or unreadable trace: the message names the file and what is wrong (record index, field).
class TraceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TracePolicy {
  std::string name;        // e.g. "specontext", "specontext-batch", "quest", "streaming"
  bool per_layer = false;  // a ranking per layer (quest) or one shared by every layer (specontext)
  bool head_level = true;  // one ranking per KV head, or one for all heads (batch-level)
  int page_size = 1;       // > 1: the ranking lists whole pages' positions (quest: 16)
  // Lists of one record: [layers or 1][kv_heads or 1].
  int lists(int layers, int kv_heads) const { return (per_layer ? layers : 1) * (head_level ? kv_heads : 1); }
};

struct TraceHeader {
  std::string model;          // what was run (path or name)
  std::string draft;          // the retrieval head's draft ("" without)
  std::string task;           // e.g. "passkey", or "prompt-file"
  std::string prompt_source;  // the prompt file, or the task's seed and context
  std::string backend;        // "cpu" or "cuda"
  std::string config_hash;    // hex FNV-1a 64 of the model's and the draft's config files, concatenated
  int layers = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  std::int64_t b_max = 0;           // longest ranking, and the attention's guaranteed top
  std::int64_t prompt_tokens = 0;   // per request (the longest, if they differ)
  std::int64_t max_new = 0;         // decode steps per request
  int requests = 0;
  std::vector<TracePolicy> policies;
  nlohmann::json extra = nlohmann::json::object();  // anything else worth keeping (e.g. the task's answers)
};

struct HeadAttention {
  std::vector<std::int32_t> positions;  // sorted by probability descending
  std::vector<float> probabilities;     // same length; stored as IEEE binary16 (relative error <= 2^-11)
};

struct StepRecord {
  std::int32_t request = 0;
  std::int32_t step = 0;      // decode step of this request, from 0
  std::int64_t position = 0;  // t, the entering token's position
  std::vector<HeadAttention> attention;                         // [layers * kv_heads]
  std::vector<std::vector<std::vector<std::int32_t>>> rankings;  // [policies][lists][<= b_max]
};

struct Trace {
  TraceHeader header;
  std::vector<StepRecord> steps;  // in file order (requests may interleave)
};

nlohmann::json to_json(const TraceHeader& h);
// Throws TraceError naming `origin` and the field for a missing or mistyped field.
TraceHeader header_from_json(const nlohmann::json& j, const std::string& origin);

// Streams records to a file. The header is written at construction, each record as it comes, the
// trailer by close() (or the destructor, which swallows errors): a file without its trailer is a
// truncated one. Records are checked against the header before they are written (TraceError).
class TraceWriter {
 public:
  TraceWriter(const std::filesystem::path& path, TraceHeader header);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  void write(const StepRecord& record);
  void close();
  std::int64_t records() const { return records_; }
  std::int64_t bytes() const { return bytes_; }

 private:
  std::filesystem::path path_;
  TraceHeader header_;
  std::ofstream out_;
  std::int64_t records_ = 0, bytes_ = 0;
  bool closed_ = false;
};

// Reads and checks a whole trace (magic, version, header fields, every record's CRC, sizes and
// positions, the trailer's record count). Throws TraceError naming the file.
Trace read_trace(const std::filesystem::path& path);

// The check the writer applies to a record (also used by the reader after decoding): sizes against
// the header, positions in 0..t, rankings without duplicates and at most b_max long, the attention
// sorted by probability and holding t. Throws TraceError with `where` as the prefix.
void check_record(const TraceHeader& h, const StepRecord& r, const std::string& where);

// FNV-1a 64 of a byte string, as 16 lowercase hex digits (the header's config_hash).
std::string fnv1a64_hex(const std::string& bytes);

// Exposed for tests: the binary16 conversion of the stored probabilities (round to nearest even,
// subnormals kept) and the records' CRC-32 (IEEE 802.3, the same as zlib's crc32).
std::uint16_t float_to_half(float value);
float half_to_float(std::uint16_t bits);
std::uint32_t crc32(const void* data, std::size_t size);

}  // namespace specontext::traces
