#pragma once
// Safetensors files (8-byte little-endian header length, a JSON header of
// name -> {dtype, shape, data_offsets}, then the data), single or sharded with
// model.safetensors.index.json. Files are memory-mapped; nothing is copied until asked.
// Every tensor of the format's fixed-width dtypes is indexed (an EAGLE-3 draft carries int64 and
// bool vocabulary maps beside its weights), but only F32, F16 and BF16 convert to floats.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace specontext {

enum class DType { F32, F16, BF16, F64, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };
const char* to_string(DType d);
std::size_t dtype_bytes(DType d);
// Whether read_f32/read_bf16 convert it (F32, F16, BF16).
bool is_readable_float(DType d);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t offset = 0;  // from the start of the file's data section
  std::uint64_t bytes = 0;
  std::filesystem::path file;
  std::int64_t elements() const;
};

// One mapped file. Errors (truncated file, header past the end, offsets outside the data,
// a dtype outside the format, bytes that do not match the shape) name the file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::uint8_t* data(const TensorInfo& t) const;  // raw bytes in the file's dtype
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::map<std::string, TensorInfo> tensors_;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  std::uint64_t data_start_ = 0;
};

// All tensors of a checkpoint folder: model.safetensors, or the shards listed in
// model.safetensors.index.json (each shard opened once).
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& dir);

  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // error naming the tensor and folder if absent
  // The tensor converted to fp32 (from bf16/fp16/fp32; any other dtype is an error naming the
  // tensor and its file).
  std::vector<float> read_f32(const std::string& name) const;
  // The tensor converted to bf16 bit patterns (round to nearest even; the same dtypes as read_f32).
  std::vector<std::uint16_t> read_bf16(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<std::shared_ptr<SafetensorsFile>, TensorInfo>> index_;
};

// Writes one safetensors file (used to save seeded random checkpoints and test inputs).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;  // little-endian, shape's product x dtype_bytes
};
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "[rows, cols]": shapes in error messages.
std::string shape_string(const std::vector<std::int64_t>& shape);

// bf16 <-> fp32 (round to nearest even; NaN stays NaN) and fp16 -> fp32.
std::uint16_t f32_to_bf16(float f);
float bf16_to_f32(std::uint16_t b);
float f16_to_f32(std::uint16_t h);

}  // namespace specontext
