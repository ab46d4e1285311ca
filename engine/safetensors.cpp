#include "engine/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "sim/config_error.hpp"
#include "sim/json_fields.hpp"

namespace specontext {
namespace {

[[noreturn]] void file_error(const std::filesystem::path& file, const std::string& what) {
  throw ConfigError(file.string(), "", what);
}

[[noreturn]] void tensor_error(const std::filesystem::path& file, const std::string& tensor, const std::string& what) {
  throw ConfigError(file.string() + ": tensor '" + tensor + "'", "", what);
}

constexpr DType kAllDTypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                                 DType::I16, DType::I8, DType::U64, DType::U32, DType::U16, DType::U8, DType::BOOL};

bool parse_dtype(const std::string& s, DType& out) {
  for (DType d : kAllDTypes)
    if (s == to_string(d)) {
      out = d;
      return true;
    }
  return false;
}

void check_readable(const TensorInfo& t, const char* what) {
  if (!is_readable_float(t.dtype))
    tensor_error(t.file, t.name, std::string("dtype ") + to_string(t.dtype) + " cannot be read as " + what +
                                     " (the engine converts F32, F16 and BF16)");
}

std::uint16_t load_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

TensorInfo parse_entry(const std::filesystem::path& file, const std::string& name, const nlohmann::json& e,
                       std::uint64_t data_bytes) {
  if (!e.is_object()) tensor_error(file, name, "header entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!e.contains(key)) tensor_error(file, name, std::string("header entry has no '") + key + "'");
  TensorInfo t;
  t.name = name;
  t.file = file;
  if (!e.at("dtype").is_string()) tensor_error(file, name, "'dtype' is not a string");
  const std::string dtype = e.at("dtype").get<std::string>();
  if (!parse_dtype(dtype, t.dtype))
    tensor_error(file, name, "dtype " + dtype + " is unsupported (not a fixed-width safetensors dtype)");

  const auto& shape = e.at("shape");
  if (!shape.is_array()) tensor_error(file, name, "'shape' is not a list");
  std::uint64_t elements = 1;
  bool overflow = false;
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<long long>() < 0)
      tensor_error(file, name, "'shape' must hold non-negative integers, got " + shape.dump());
    const auto n = d.get<std::uint64_t>();
    t.shape.push_back(static_cast<std::int64_t>(n));
    if (n != 0 && elements > std::numeric_limits<std::uint64_t>::max() / 8 / n) overflow = true;
    elements *= n;
  }

  const auto& off = e.at("data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_integer() || !off[1].is_number_integer() ||
      off[0].get<long long>() < 0 || off[1].get<long long>() < 0)
    tensor_error(file, name, "'data_offsets' must be [begin, end] with non-negative integers, got " + off.dump());
  const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
  if (end < begin) tensor_error(file, name, "data_offsets " + off.dump() + " end before they begin");
  if (end > data_bytes)
    tensor_error(file, name, "data_offsets " + off.dump() + " run past the end of the data (" +
                                 std::to_string(data_bytes) + " bytes); the file is truncated or corrupt");
  const std::uint64_t expected = elements * dtype_bytes(t.dtype);
  if (overflow || end - begin != expected)
    tensor_error(file, name, "data_offsets " + off.dump() + " hold " + std::to_string(end - begin) +
                                 " bytes but shape " + shape_string(t.shape) + " of " + dtype + " needs " +
                                 (overflow ? std::string("more than 2^64") : std::to_string(expected)));
  t.offset = begin;
  t.bytes = end - begin;
  return t;
}

void append_bytes_le(std::vector<std::uint8_t>& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace

const char* to_string(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U64: return "U64";
    case DType::U32: return "U32";
    case DType::U16: return "U16";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

std::size_t dtype_bytes(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: case DType::U64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

bool is_readable_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

std::int64_t TensorInfo::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) file_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    file_error(path, "not a regular file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    file_error(path, "is " + std::to_string(size) + " bytes, shorter than the 8-byte header length: not a safetensors file");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED) file_error(path, std::string("cannot mmap: ") + std::strerror(errno));
  map_ = static_cast<const std::uint8_t*>(m);
  map_bytes_ = size;

  // From here on the constructor may throw: release the mapping on the way out.
  try {
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = header_len << 8 | map_[i];
    if (header_len > size - 8)
      file_error(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                           std::to_string(size) + " bytes): not a safetensors file, or truncated");
    data_start_ = 8 + header_len;
    const std::uint64_t data_bytes = size - data_start_;
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(map_ + 8, map_ + 8 + header_len);
    } catch (const nlohmann::json::parse_error& e) {
      file_error(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) file_error(path, "header is not a JSON object");
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      tensors_.emplace(name, parse_entry(path, name, entry, data_bytes));
    }
  } catch (...) {
    ::munmap(const_cast<std::uint8_t*>(map_), map_bytes_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::uint8_t*>(map_), map_bytes_);
}

const std::uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  if (t.offset + t.bytes > map_bytes_ - data_start_)
    tensor_error(path_, t.name, "is not a tensor of this file");
  return map_ + data_start_ + t.offset;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw ConfigError(dir.string(), "", "no such checkpoint folder");
  if (!fs::is_directory(dir, ec)) throw ConfigError(dir.string(), "", "is not a folder (a checkpoint is a folder)");

  Checkpoint c;
  c.dir_ = dir;
  const fs::path index_path = dir / "model.safetensors.index.json";
  const fs::path single_path = dir / "model.safetensors";

  auto add_file_tensors = [&](const std::shared_ptr<SafetensorsFile>& f) {
    for (const auto& [name, info] : f->tensors()) {
      auto [it, inserted] = c.index_.emplace(name, std::make_pair(f, info));
      if (!inserted && it->second.first != f)
        throw ConfigError(f->path().string() + ": tensor '" + name + "'", "",
                          "also stored in " + it->second.first->path().string());
    }
  };

  if (fs::exists(index_path, ec)) {
    const nlohmann::json index = read_json_file(index_path);
    JsonFields fields(index, index_path.string());
    const auto& map = fields.raw("weight_map");
    if (!map.is_object()) fields.fail("weight_map", "expected an object of tensor name -> shard file");
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [tensor, shard] : map.items()) {
      if (!shard.is_string())
        fields.fail("weight_map", "the shard of tensor '" + tensor + "' is not a file name");
      const std::string shard_name = shard.get<std::string>();
      if (shards.count(shard_name)) continue;
      const fs::path shard_path = dir / shard_name;
      if (!fs::is_regular_file(shard_path, ec))
        fields.fail("weight_map", "shard " + shard_path.string() + " (holding tensor '" + tensor + "') does not exist");
      shards.emplace(shard_name, std::make_shared<SafetensorsFile>(shard_path));
    }
    for (const auto& [tensor, shard] : map.items()) {
      const auto& f = shards.at(shard.get<std::string>());
      if (!f->tensors().count(tensor))
        throw ConfigError(index_path.string(), "weight_map",
                          "tensor '" + tensor + "' is listed in shard " + f->path().string() + " but that file does not hold it");
    }
    // Tensors a shard holds beyond the index are kept too, so that load_weights sees them (an
    // index and shards that disagree are a corrupt checkpoint, not something to hide).
    for (const auto& [_, f] : shards) {
      c.files_.push_back(f);
      add_file_tensors(f);
    }
  } else if (fs::exists(single_path, ec)) {
    auto f = std::make_shared<SafetensorsFile>(single_path);
    c.files_.push_back(f);
    add_file_tensors(f);
  } else {
    std::string others;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".safetensors") others += (others.empty() ? "" : ", ") + entry.path().filename().string();
    throw ConfigError(dir.string(), "", "holds neither model.safetensors nor model.safetensors.index.json" +
                                            (others.empty() ? std::string() : " (found " + others + " without an index)"));
  }
  return c;
}

bool Checkpoint::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw ConfigError(dir_.string() + ": tensor '" + name + "'", "", "not in the checkpoint");
  return it->second.second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, _] : index_) out.push_back(name);
  return out;
}

std::vector<float> Checkpoint::read_f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  check_readable(t, "fp32");
  const std::uint8_t* p = index_.at(name).first->data(t);
  const auto n = static_cast<std::size_t>(t.elements());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32:
      if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(out.data(), p, n * 4);
      } else {
        for (std::size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(load_u32(p + 4 * i));
      }
      break;
    case DType::F16:
      for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      break;
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(p + 2 * i));
      break;
    default:  // check_readable has rejected the rest
      break;
  }
  return out;
}

std::vector<std::uint16_t> Checkpoint::read_bf16(const std::string& name) const {
  const TensorInfo& t = info(name);
  check_readable(t, "bf16");
  const std::uint8_t* p = index_.at(name).first->data(t);
  const auto n = static_cast<std::size_t>(t.elements());
  std::vector<std::uint16_t> out(n);
  switch (t.dtype) {
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = load_u16(p + 2 * i);
      break;
    case DType::F32:
      for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(std::bit_cast<float>(load_u32(p + 4 * i)));
      break;
    case DType::F16:  // every fp16 value is exact in fp32, so this rounds once
      for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(f16_to_f32(load_u16(p + 2 * i)));
      break;
    default:  // check_readable has rejected the rest
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw std::invalid_argument(path.string() + ": tensor name '" + t.name + "' is reserved or empty");
    if (header.contains(t.name)) throw std::invalid_argument(path.string() + ": tensor '" + t.name + "' given twice");
    std::uint64_t elements = 1;
    for (auto d : t.shape) {
      if (d < 0) throw std::invalid_argument(path.string() + ": tensor '" + t.name + "' has a negative dimension");
      elements *= static_cast<std::uint64_t>(d);
    }
    if (t.bytes.size() != elements * dtype_bytes(t.dtype))
      throw std::invalid_argument(path.string() + ": tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) +
                                  " bytes, shape " + shape_string(t.shape) + " of " + to_string(t.dtype) + " needs " +
                                  std::to_string(elements * dtype_bytes(t.dtype)));
    header[t.name] = {{"dtype", to_string(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  // Spaces pad the header so that the data starts 8-byte aligned (as Hugging Face's writer does).
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::uint8_t> prefix;
  append_bytes_le(prefix, text.size(), 8);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw ConfigError(path.string(), "", "cannot open for writing");
  out.write(reinterpret_cast<const char*>(prefix.data()), static_cast<std::streamsize>(prefix.size()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  // Tensors are written in the order given, so their offsets are contiguous and ascending.
  for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  out.close();
  if (!out) throw ConfigError(path.string(), "", "write failed");
}

// ---------------------------------------------------------------------------------------------
// Conversions

std::uint16_t f32_to_bf16(float f) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((bits >> 16) | 0x0040);  // keep sign, force quiet
  // Round to nearest, ties to even; a carry into the exponent rounds up correctly (to inf at the top).
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float bf16_to_f32(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, or NaN with its payload
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // subnormal: mant * 2^-24, exact in fp32
    return sign ? -v : v;
  }
  return std::bit_cast<float>(bits);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace specontext
