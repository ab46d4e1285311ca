#include "engine/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "engine/safetensors.hpp"  // f16_to_f32, bf16_to_f32
#include "sim/config_error.hpp"

namespace specontext {
namespace {

struct GgmlType {
  const char* name;
  std::uint32_t block;       // elements per block
  std::uint32_t block_bytes;
};

// ggml's type table (ggml.h, ggml_type; gguf-py GGML_QUANT_SIZES). Ids 4, 5 (removed Q4_2/Q4_3) and
// 31-33, 36-38 (removed) have no entry.
const GgmlType* ggml_type(std::uint32_t id) {
  static const std::map<std::uint32_t, GgmlType> table = {
      {0, {"F32", 1, 4}},       {1, {"F16", 1, 2}},        {2, {"Q4_0", 32, 18}},     {3, {"Q4_1", 32, 20}},
      {6, {"Q5_0", 32, 22}},    {7, {"Q5_1", 32, 24}},     {8, {"Q8_0", 32, 34}},     {9, {"Q8_1", 32, 40}},
      {10, {"Q2_K", 256, 84}},  {11, {"Q3_K", 256, 110}},  {12, {"Q4_K", 256, 144}},  {13, {"Q5_K", 256, 176}},
      {14, {"Q6_K", 256, 210}}, {15, {"Q8_K", 256, 292}},  {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}},
      {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}}, {20, {"IQ4_NL", 32, 18}},  {21, {"IQ3_S", 256, 110}},
      {22, {"IQ2_S", 256, 82}}, {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},       {25, {"I16", 1, 2}},
      {26, {"I32", 1, 4}},      {27, {"I64", 1, 8}},       {28, {"F64", 1, 8}},       {29, {"IQ1_M", 256, 56}},
      {30, {"BF16", 1, 2}},     {34, {"TQ1_0", 256, 54}},  {35, {"TQ2_0", 256, 66}},  {39, {"MXFP4", 32, 17}},
  };
  auto it = table.find(id);
  return it == table.end() ? nullptr : &it->second;
}

constexpr std::uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kBF16 = 30;

std::uint16_t load_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
std::uint64_t load_u64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(load_u32(p)) | static_cast<std::uint64_t>(load_u32(p + 4)) << 32;
}

// The shortest decimal that reads back as this float, as a double: a Float32 1e-5 in the file is
// 1e-5 to the config, as in the Hugging Face config.json it was converted from, not 9.99999974e-06.
double float_as_decimal(float f) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f);
  if (ec != std::errc()) return static_cast<double>(f);
  *end = '\0';
  return std::strtod(buf, nullptr);
}

// Reads the header front to back; every read checks the bytes are there, and the error names
// what was being read (a key or a tensor), so a truncated file says where it ends.
class Cursor {
 public:
  Cursor(const std::filesystem::path& path, const std::uint8_t* p, std::uint64_t size) : path_(path), p_(p), size_(size) {}
  std::uint64_t pos() const { return pos_; }
  void set_context(std::string what) { context_ = std::move(what); }

  const std::uint8_t* take(std::uint64_t n) {
    if (n > size_ - pos_)
      throw ConfigError(path_.string(), context_, "truncated: the header needs " + std::to_string(n) + " bytes at offset " +
                                                      std::to_string(pos_) + " but the file is " + std::to_string(size_) + " bytes");
    const std::uint8_t* p = p_ + pos_;
    pos_ += n;
    return p;
  }
  std::uint32_t u32() { return load_u32(take(4)); }
  std::uint64_t u64() { return load_u64(take(8)); }
  std::string str() {
    const std::uint64_t n = u64();
    if (n > size_ - pos_)
      throw ConfigError(path_.string(), context_, "truncated or corrupt: a string of " + std::to_string(n) +
                                                      " bytes at offset " + std::to_string(pos_) + " runs past the end of the file (" +
                                                      std::to_string(size_) + " bytes)");
    const auto* p = reinterpret_cast<const char*>(take(n));
    return std::string(p, p + n);
  }

  GgufValue value(GgufValueType type, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufValueType::UInt8: v.value = std::uint64_t{*take(1)}; break;
      case GgufValueType::Int8: v.value = std::int64_t{static_cast<std::int8_t>(*take(1))}; break;
      case GgufValueType::UInt16: v.value = std::uint64_t{load_u16(take(2))}; break;
      case GgufValueType::Int16: v.value = std::int64_t{static_cast<std::int16_t>(load_u16(take(2)))}; break;
      case GgufValueType::UInt32: v.value = std::uint64_t{u32()}; break;
      case GgufValueType::Int32: v.value = std::int64_t{static_cast<std::int32_t>(u32())}; break;
      case GgufValueType::UInt64: v.value = u64(); break;
      case GgufValueType::Int64: v.value = static_cast<std::int64_t>(u64()); break;
      case GgufValueType::Float32: v.value = static_cast<double>(std::bit_cast<float>(u32())); break;
      case GgufValueType::Float64: v.value = std::bit_cast<double>(u64()); break;
      case GgufValueType::Bool: {
        const std::uint8_t b = *take(1);
        if (b > 1) throw ConfigError(path_.string(), context_, "a bool holds " + std::to_string(b) + " (not 0 or 1)");
        v.value = b == 1;
        break;
      }
      case GgufValueType::String: v.value = str(); break;
      case GgufValueType::Array: {
        if (depth > 0) throw ConfigError(path_.string(), context_, "nested arrays are not supported");
        const std::uint32_t et = u32();
        if (et > 12) throw ConfigError(path_.string(), context_, "array of unknown value type " + std::to_string(et));
        v.element_type = static_cast<GgufValueType>(et);
        const std::uint64_t n = u64();
        // Each element takes at least one byte: a count beyond the file is corrupt, not a reason to allocate.
        if (n > size_ - pos_)
          throw ConfigError(path_.string(), context_, "truncated or corrupt: an array of " + std::to_string(n) +
                                                          " elements at offset " + std::to_string(pos_) + " runs past the end of the file");
        std::vector<GgufValue> items;
        items.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) items.push_back(value(v.element_type, depth + 1));
        v.value = std::move(items);
        break;
      }
      default:
        throw ConfigError(path_.string(), context_, "unknown value type " + std::to_string(static_cast<std::uint32_t>(type)));
    }
    return v;
  }

 private:
  const std::filesystem::path& path_;
  const std::uint8_t* p_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::string context_ = "header";
};

}  // namespace

const char* to_string(GgufValueType t) {
  switch (t) {
    case GgufValueType::UInt8: return "uint8";
    case GgufValueType::Int8: return "int8";
    case GgufValueType::UInt16: return "uint16";
    case GgufValueType::Int16: return "int16";
    case GgufValueType::UInt32: return "uint32";
    case GgufValueType::Int32: return "int32";
    case GgufValueType::Float32: return "float32";
    case GgufValueType::Bool: return "bool";
    case GgufValueType::String: return "string";
    case GgufValueType::Array: return "array";
    case GgufValueType::UInt64: return "uint64";
    case GgufValueType::Int64: return "int64";
    case GgufValueType::Float64: return "float64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<std::uint64_t>(value) || std::holds_alternative<std::int64_t>(value);
}
bool GgufValue::is_number() const { return is_integer() || std::holds_alternative<double>(value); }

std::string GgufValue::describe() const {
  if (const auto* a = std::get_if<std::vector<GgufValue>>(&value))
    return "array of " + std::to_string(a->size()) + " " + to_string(element_type);
  std::string s = to_string(type);
  if (const auto* u = std::get_if<std::uint64_t>(&value)) return s + " " + std::to_string(*u);
  if (const auto* i = std::get_if<std::int64_t>(&value)) return s + " " + std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return s + " " + std::to_string(*d);
  if (const auto* b = std::get_if<bool>(&value)) return s + (*b ? " true" : " false");
  return s + " '" + std::get<std::string>(value) + "'";
}

std::int64_t GgufTensorInfo::elements() const {
  std::int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::vector<std::int64_t> GgufTensorInfo::shape() const { return {dims.rbegin(), dims.rend()}; }

std::string ggml_type_name(std::uint32_t type) {
  const GgmlType* t = ggml_type(type);
  return t ? t->name : "type " + std::to_string(type);
}

bool gguf_type_readable(std::uint32_t type) {
  return type == kF32 || type == kF16 || type == kBF16 || type == kQ8_0 || type == kQ4_0 || type == kQ4_1;
}

void dequantize_to_f32(std::uint32_t type, const std::uint8_t* src, std::int64_t elements, float* out) {
  const auto n = static_cast<std::size_t>(elements);
  switch (type) {
    case kF32:
      for (std::size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(load_u32(src + 4 * i));
      return;
    case kF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(src + 2 * i));
      return;
    case kBF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(src + 2 * i));
      return;
    default: break;
  }
  if (n % 32 != 0) throw std::invalid_argument("dequantize_to_f32: element count is not a multiple of the block size 32");
  const std::size_t blocks = n / 32;
  // ggml's block layouts (ggml-common.h); in Q4_0/Q4_1 the low nibbles of qs[0..15] are elements
  // 0..15 of the block and the high nibbles elements 16..31.
  switch (type) {
    case kQ8_0:  // fp16 d, int8 qs[32]: d * q
      for (std::size_t b = 0; b < blocks; ++b) {
        const std::uint8_t* p = src + b * 34;
        const float d = f16_to_f32(load_u16(p));
        for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
      }
      return;
    case kQ4_0:  // fp16 d, qs[16]: (q - 8) * d
      for (std::size_t b = 0; b < blocks; ++b) {
        const std::uint8_t* p = src + b * 18;
        const float d = f16_to_f32(load_u16(p));
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = static_cast<float>((p[2 + j] & 0x0F) - 8) * d;
          out[b * 32 + j + 16] = static_cast<float>((p[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    case kQ4_1:  // fp16 d, fp16 m, qs[16]: q * d + m
      for (std::size_t b = 0; b < blocks; ++b) {
        const std::uint8_t* p = src + b * 20;
        const float d = f16_to_f32(load_u16(p)), m = f16_to_f32(load_u16(p + 2));
        for (int j = 0; j < 16; ++j) {
          out[b * 32 + j] = static_cast<float>(p[4 + j] & 0x0F) * d + m;
          out[b * 32 + j + 16] = static_cast<float>(p[4 + j] >> 4) * d + m;
        }
      }
      return;
    default:
      throw std::invalid_argument("dequantize_to_f32: ggml type " + ggml_type_name(type) + " (id " + std::to_string(type) +
                                  ") is not supported");
  }
}

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ConfigError(path.string(), "", std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ConfigError(path.string(), "", "not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw ConfigError(path.string(), "magic", "is " + std::to_string(size) + " bytes, too short for a GGUF header (truncated?)");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED) throw ConfigError(path.string(), "", std::string("cannot mmap: ") + std::strerror(errno));
  map_ = static_cast<const std::uint8_t*>(m);
  map_bytes_ = size;

  try {
    const std::string file = path.string();
    Cursor c(path_, map_, size);
    c.set_context("magic");
    if (std::memcmp(c.take(4), "GGUF", 4) != 0) {
      std::string got;
      for (int i = 0; i < 4; ++i) got += (map_[i] >= 32 && map_[i] < 127) ? static_cast<char>(map_[i]) : '?';
      throw ConfigError(file, "magic", "is '" + got + "', not 'GGUF': not a GGUF file");
    }
    c.set_context("version");
    version_ = c.u32();
    if (version_ != 2 && version_ != 3) {
      const std::uint32_t swapped = (version_ >> 24) | ((version_ >> 8) & 0xFF00u) | ((version_ << 8) & 0xFF0000u) | (version_ << 24);
      throw ConfigError(file, "version",
                        (swapped == 2 || swapped == 3)
                            ? "is " + std::to_string(swapped) + " big-endian; only little-endian GGUF files are read"
                            : "is " + std::to_string(version_) + "; versions 2 and 3 are supported (version 1 predates 64-bit counts)");
    }
    c.set_context("tensor_count");
    const std::uint64_t n_tensors = c.u64();
    c.set_context("kv_count");
    const std::uint64_t n_kv = c.u64();
    // Every key-value pair and tensor info takes more than 8 bytes: larger counts are corrupt.
    if (n_kv > size / 8) throw ConfigError(file, "kv_count", "truncated or corrupt: " + std::to_string(n_kv) + " metadata entries cannot fit in " + std::to_string(size) + " bytes");
    if (n_tensors > size / 8)
      throw ConfigError(file, "tensor_count", "truncated or corrupt: " + std::to_string(n_tensors) + " tensors cannot fit in " + std::to_string(size) + " bytes");

    for (std::uint64_t i = 0; i < n_kv; ++i) {
      c.set_context("metadata entry " + std::to_string(i));
      std::string key = c.str();
      c.set_context(key);
      const std::uint32_t type = c.u32();
      if (type > 12) throw ConfigError(file, key, "unknown value type " + std::to_string(type));
      GgufValue v = c.value(static_cast<GgufValueType>(type), 0);
      if (!metadata_.emplace(key, std::move(v)).second) throw ConfigError(file, key, "appears twice in the metadata");
    }

    if (has("general.alignment")) {
      const std::int64_t a = integer("general.alignment");
      if (a <= 0 || (a & (a - 1)) != 0)
        throw ConfigError(file, "general.alignment", "must be a positive power of two, got " + std::to_string(a));
      alignment_ = static_cast<std::uint64_t>(a);
    }

    std::vector<std::uint64_t> relative(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensorInfo t;
      c.set_context("tensor info " + std::to_string(i));
      t.name = c.str();
      c.set_context(t.name);
      const std::uint32_t n_dims = c.u32();
      if (n_dims == 0 || n_dims > 4)
        throw ConfigError(file, t.name, "has " + std::to_string(n_dims) + " dimensions (GGUF allows 1 to 4)");
      std::uint64_t elements = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const std::uint64_t ne = c.u64();
        if (ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            (ne != 0 && elements > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / ne))
          throw ConfigError(file, t.name, "dimension " + std::to_string(ne) + " overflows");
        elements *= ne;
        t.dims.push_back(static_cast<std::int64_t>(ne));
      }
      t.type = c.u32();
      const GgmlType* gt = ggml_type(t.type);
      if (!gt) throw ConfigError(file, t.name, "has tensor type id " + std::to_string(t.type) + ", which ggml does not define");
      if (t.dims[0] % gt->block != 0)
        throw ConfigError(file, t.name, "first dimension " + std::to_string(t.dims[0]) + " is not a multiple of " +
                                            gt->name + "'s block size " + std::to_string(gt->block));
      t.bytes = elements / gt->block * gt->block_bytes;
      relative[static_cast<std::size_t>(i)] = c.u64();
      if (relative[static_cast<std::size_t>(i)] % alignment_ != 0)
        throw ConfigError(file, t.name, "data offset " + std::to_string(relative[static_cast<std::size_t>(i)]) +
                                            " is not a multiple of the alignment " + std::to_string(alignment_));
      if (tensor_index_.count(t.name)) throw ConfigError(file, t.name, "appears twice in the tensor table");
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      GgufTensorInfo& t = tensors_[i];
      const std::uint64_t end = data_offset_ + relative[i] + t.bytes;
      if (relative[i] > size || end < relative[i] || end > size)
        throw ConfigError(file, t.name, ggml_type_name(t.type) + " data at offset " + std::to_string(data_offset_ + relative[i]) +
                                            " (" + std::to_string(t.bytes) + " bytes) runs past the end of the file (" +
                                            std::to_string(size) + " bytes): truncated or corrupt");
      t.offset = data_offset_ + relative[i];
    }
  } catch (...) {
    ::munmap(const_cast<std::uint8_t*>(map_), map_bytes_);
    map_ = nullptr;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (map_) ::munmap(const_cast<std::uint8_t*>(map_), map_bytes_);
}

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw ConfigError(path_.string(), key, "missing from the GGUF metadata");
  return it->second;
}

std::int64_t GgufFile::integer(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* i = std::get_if<std::int64_t>(&v.value)) return *i;
  if (const auto* u = std::get_if<std::uint64_t>(&v.value)) {
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw ConfigError(path_.string(), key, "value " + std::to_string(*u) + " is too large");
    return static_cast<std::int64_t>(*u);
  }
  throw ConfigError(path_.string(), key, "expected an integer, got " + v.describe());
}

double GgufFile::number(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* d = std::get_if<double>(&v.value))
    return v.type == GgufValueType::Float32 ? float_as_decimal(static_cast<float>(*d)) : *d;
  if (v.is_integer()) return static_cast<double>(integer(key));
  throw ConfigError(path_.string(), key, "expected a number, got " + v.describe());
}

bool GgufFile::boolean(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* b = std::get_if<bool>(&v.value)) return *b;
  throw ConfigError(path_.string(), key, "expected a bool, got " + v.describe());
}

const std::string& GgufFile::string(const std::string& key) const {
  const GgufValue& v = value(key);
  if (const auto* s = std::get_if<std::string>(&v.value)) return *s;
  throw ConfigError(path_.string(), key, "expected a string, got " + v.describe());
}

std::vector<std::string> GgufFile::strings(const std::string& key) const {
  const GgufValue& v = value(key);
  const auto* a = std::get_if<std::vector<GgufValue>>(&v.value);
  if (!a || v.element_type != GgufValueType::String)
    throw ConfigError(path_.string(), key, "expected an array of strings, got " + v.describe());
  std::vector<std::string> out;
  out.reserve(a->size());
  for (const auto& e : *a) out.push_back(std::get<std::string>(e.value));
  return out;
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) throw ConfigError(path_.string(), name, "no such tensor in the file");
  return tensors_[it->second];
}

std::vector<float> GgufFile::read_f32(const std::string& name) const {
  const GgufTensorInfo& t = tensor(name);
  if (!gguf_type_readable(t.type))
    throw ConfigError(path_.string(), name, "has tensor type " + ggml_type_name(t.type) + " (id " + std::to_string(t.type) +
                                                "), which the engine cannot dequantise (it reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1)");
  std::vector<float> out(static_cast<std::size_t>(t.elements()));
  dequantize_to_f32(t.type, data(t), t.elements(), out.data());
  return out;
}

}  // namespace specontext
