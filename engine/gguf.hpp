#pragma once
// GGUF files (llama.cpp's format, versions 2 and 3, little-endian): the header, every metadata
// value type, the tensor table, and dequantisation to fp32 of the tensor types the engine reads
// (F32, F16, BF16, Q8_0, Q4_0, Q4_1). The file is memory-mapped; nothing is copied until asked.
//
// GGUF lists a tensor's dimensions fastest-varying first (ggml's ne): ne = [576, 1536] is a
// row-major PyTorch [1536, 576] matrix with the same bytes in the same order, so shape() reverses
// dims and no data is transposed.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace specontext {

enum class GgufValueType : std::uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};
const char* to_string(GgufValueType t);

struct GgufValue {
  GgufValueType type = GgufValueType::UInt8;
  GgufValueType element_type = GgufValueType::UInt8;  // arrays only
  // Unsigned integers as uint64, signed as int64, floats as double (a Float32 keeps its exact
  // float value), then bool, string and array.
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<GgufValue>> value;

  bool is_integer() const;
  bool is_number() const;  // integer or float
  std::string describe() const;  // short text for error messages ("uint32 30", "array of 49152 string")
};

struct GgufTensorInfo {
  std::string name;
  std::uint32_t type = 0;            // ggml type id (0 F32, 1 F16, 8 Q8_0, ...)
  std::vector<std::int64_t> dims;    // GGUF order: fastest-varying first
  std::uint64_t offset = 0;          // absolute, from the start of the file
  std::uint64_t bytes = 0;
  std::int64_t elements() const;
  std::vector<std::int64_t> shape() const;  // PyTorch order: dims reversed
};

// ggml's name of a type id ("Q4_1"), or "type <id>" for an id the table does not know.
std::string ggml_type_name(std::uint32_t type);
// Whether read_f32 can dequantise tensors of this type.
bool gguf_type_readable(std::uint32_t type);

// One mapped file. Errors are ConfigError with origin = the file's path and field = the metadata
// key or tensor name concerned: bad magic, a version other than 2 or 3 (big-endian files included),
// truncation anywhere in the header, a type id ggml does not define, a tensor whose data runs past
// the end of the file, and (when read) a tensor type the engine cannot dequantise.
class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // where the tensor data section starts

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const GgufValue& value(const std::string& key) const;  // error if absent
  // Typed accessors: an absent key or a value of another type is an error naming the key.
  std::int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;  // a Float32 comes back as the shortest decimal that round-trips
  bool boolean(const std::string& key) const;
  const std::string& string(const std::string& key) const;
  std::vector<std::string> strings(const std::string& key) const;  // an array of strings

  // In file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return tensor_index_.count(name) != 0; }
  const GgufTensorInfo& tensor(const std::string& name) const;  // error if absent
  const std::uint8_t* data(const GgufTensorInfo& t) const { return map_ + t.offset; }
  // The tensor dequantised to fp32, in GGUF element order (row-major in shape()'s order).
  std::vector<float> read_f32(const std::string& name) const;

 private:
  std::filesystem::path path_;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

// Dequantises `elements` values of ggml type `type` from `src` (elements a multiple of the type's
// block size). Throws std::invalid_argument for a type gguf_type_readable rejects.
void dequantize_to_f32(std::uint32_t type, const std::uint8_t* src, std::int64_t elements, float* out);

}  // namespace specontext
