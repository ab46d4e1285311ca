// Tests of engine/safetensors: bf16/fp16 conversions checked by hand, write -> open -> read round
// trips for each dtype, sharded checkpoints, and corrupt files whose errors name the file and tensor.
#include <gtest/gtest.h>

#include "tests/temp_dir.hpp"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/safetensors.hpp"
#include "sim/config_error.hpp"
#include "tests/expect_config_error.hpp"

using namespace specontext;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using specontext::testing::expect_config_error_naming;
using specontext::testing::TempDir;


TensorToWrite f32_tensor(const std::string& name, std::vector<std::int64_t> shape, const std::vector<float>& v) {
  TensorToWrite t{name, DType::F32, std::move(shape), std::vector<std::uint8_t>(v.size() * 4)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());  // the test hosts are little-endian
  return t;
}

TensorToWrite u16_tensor(const std::string& name, DType d, std::vector<std::int64_t> shape, const std::vector<std::uint16_t>& v) {
  TensorToWrite t{name, d, std::move(shape), std::vector<std::uint8_t>(v.size() * 2)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

// A raw file: 8-byte length, the header text, then `data_bytes` zero bytes.
void write_raw(const fs::path& p, const std::string& header, std::size_t data_bytes, std::uint64_t length_override = 0) {
  std::ofstream out(p, std::ios::binary);
  const std::uint64_t n = length_override ? length_override : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
}

}  // namespace

TEST(Safetensors, Bf16ConversionByHand) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.5f), 0xC020);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 1.0 (0x3F80) and 1 + 2^-7 (0x3F81): ties go to the even one.
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3F80);
  // 1 + 3*2^-8 lies halfway between 0x3F81 and 0x3F82: to the even one, up.
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3F82);
  // Just above halfway rounds up.
  EXPECT_EQ(f32_to_bf16(std::nextafter(1.00390625f, 2.0f)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf, as PyTorch
  const std::uint16_t nan = f32_to_bf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(bf16_to_f32(nan)));
  // A NaN whose payload lives only in the low bits must not become inf.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0xFF800001u)))));
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC020), -2.5f);
}

TEST(Safetensors, F16ConversionByHand) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC100), -2.5f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
}

TEST(Safetensors, RoundTripEachDtype) {
  TempDir tmp;
  const std::vector<float> f32 = {1.0f, -2.5f, 1.00390625f, 3.14159f, 0.0f, -1e-3f};
  const std::vector<std::uint16_t> bf16 = {0x3F80, 0xC020, 0x3F81, 0x0000, 0x7FC0, 0x8000};
  const std::vector<std::uint16_t> f16 = {0x3C00, 0xC100, 0x0001, 0x7BFF, 0x7C00, 0x3555};
  write_safetensors(tmp.path() / "model.safetensors",
                    {f32_tensor("a.f32", {2, 3}, f32), u16_tensor("b.bf16", DType::BF16, {6}, bf16),
                     u16_tensor("c.f16", DType::F16, {3, 2}, f16), f32_tensor("d.scalar", {}, {42.0f})},
                    {{"format", "pt"}});

  // The header is padded to a multiple of 8 bytes and is valid JSON with Hugging Face's keys.
  std::ifstream in(tmp.path() / "model.safetensors", std::ios::binary);
  std::uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  const json header = json::parse(text);
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(header["b.bf16"]["dtype"], "BF16");
  EXPECT_EQ(header["c.f16"]["shape"], json::array({3, 2}));
  EXPECT_EQ(header["a.f32"]["data_offsets"], json::array({0, 24}));
  EXPECT_EQ(header["b.bf16"]["data_offsets"], json::array({24, 36}));

  const Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a.f32", "b.bf16", "c.f16", "d.scalar"}));  // no __metadata__
  EXPECT_FALSE(ckpt.has("__metadata__"));
  const TensorInfo& a = ckpt.info("a.f32");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(a.elements(), 6);
  EXPECT_EQ(a.bytes, 24u);
  EXPECT_EQ(a.file, tmp.path() / "model.safetensors");
  EXPECT_EQ(ckpt.read_f32("a.f32"), f32);
  EXPECT_EQ(ckpt.read_f32("d.scalar"), (std::vector<float>{42.0f}));
  EXPECT_EQ(ckpt.info("d.scalar").elements(), 1);

  const auto a_bf16 = ckpt.read_bf16("a.f32");
  EXPECT_EQ(a_bf16[0], 0x3F80);
  EXPECT_EQ(a_bf16[1], 0xC020);
  EXPECT_EQ(a_bf16[2], 0x3F80);  // tie to even
  for (std::size_t i = 0; i < f32.size(); ++i) EXPECT_EQ(a_bf16[i], f32_to_bf16(f32[i]));

  EXPECT_EQ(ckpt.read_bf16("b.bf16"), bf16);
  const auto b = ckpt.read_f32("b.bf16");
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_EQ(b[2], 1.0078125f);
  EXPECT_TRUE(std::isnan(b[4]));
  EXPECT_TRUE(std::signbit(b[5]));

  const auto c = ckpt.read_f32("c.f16");
  EXPECT_EQ(c[0], 1.0f);
  EXPECT_EQ(c[1], -2.5f);
  EXPECT_EQ(c[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(c[3], 65504.0f);
  EXPECT_TRUE(std::isinf(c[4]));
  const auto c_bf16 = ckpt.read_bf16("c.f16");
  for (std::size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c_bf16[i], f32_to_bf16(c[i]));
}

TEST(Safetensors, ShardedCheckpointWithIndex) {
  TempDir tmp;
  write_safetensors(tmp.path() / "model-00001-of-00002.safetensors",
                    {f32_tensor("x", {2}, {1.0f, 2.0f}), f32_tensor("y", {1}, {3.0f})});
  write_safetensors(tmp.path() / "model-00002-of-00002.safetensors", {u16_tensor("z", DType::BF16, {2}, {0x3F80, 0x4000})});
  const json index = {{"metadata", {{"total_size", 16}}},
                      {"weight_map",
                       {{"x", "model-00001-of-00002.safetensors"},
                        {"y", "model-00001-of-00002.safetensors"},
                        {"z", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(tmp.path() / "model.safetensors.index.json") << index.dump();

  const Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(ckpt.read_f32("x"), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(ckpt.read_f32("y"), (std::vector<float>{3.0f}));
  EXPECT_EQ(ckpt.read_f32("z"), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(ckpt.info("z").file, tmp.path() / "model-00002-of-00002.safetensors");
  EXPECT_EQ(ckpt.dir(), tmp.path());
  expect_config_error_naming([&] { ckpt.info("w"); }, {tmp.path().string(), "'w'"});
}

TEST(Safetensors, ShardErrorsNameTheShardAndTensor) {
  TempDir tmp;
  write_safetensors(tmp.path() / "a.safetensors", {f32_tensor("x", {1}, {1.0f})});
  const auto index_path = tmp.path() / "model.safetensors.index.json";

  std::ofstream(index_path) << json{{"weight_map", {{"x", "a.safetensors"}, {"y", "b.safetensors"}}}}.dump();
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {index_path.string(), "weight_map", "b.safetensors", "'y'"});

  std::ofstream(index_path) << json{{"weight_map", {{"x", "a.safetensors"}, {"y", "a.safetensors"}}}}.dump();
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {index_path.string(), "a.safetensors", "'y'"});

  std::ofstream(index_path) << json{{"metadata", {}}}.dump();
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {index_path.string(), "weight_map"});

  // The same tensor in two shards.
  write_safetensors(tmp.path() / "b.safetensors", {f32_tensor("x", {1}, {2.0f}), f32_tensor("y", {1}, {3.0f})});
  std::ofstream(index_path) << json{{"weight_map", {{"x", "a.safetensors"}, {"y", "b.safetensors"}}}}.dump();
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {"'x'", "a.safetensors", "b.safetensors"});
}

TEST(Safetensors, MissingFolderOrFilesNameThePath) {
  TempDir tmp;
  expect_config_error_naming([&] { Checkpoint::open(tmp.path() / "nope"); }, {(tmp.path() / "nope").string()});
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {tmp.path().string(), "model.safetensors"});
  write_safetensors(tmp.path() / "consolidated.safetensors", {f32_tensor("x", {1}, {1.0f})});
  expect_config_error_naming([&] { Checkpoint::open(tmp.path()); }, {tmp.path().string(), "consolidated.safetensors"});
  expect_config_error_naming([&] { Checkpoint::open(tmp.path() / "consolidated.safetensors"); }, {"consolidated.safetensors", "not a folder"});
}

TEST(Safetensors, CorruptFilesNameTheFileAndTensor) {
  TempDir tmp;
  const auto p = tmp.path() / "bad.safetensors";
  auto open = [&] { SafetensorsFile f(p); };

  std::ofstream(p, std::ios::binary) << "abc";
  expect_config_error_naming(open, {p.string(), "shorter than"});

  write_raw(p, "{}", 0, 1000);
  expect_config_error_naming(open, {p.string(), "header length 1000"});

  write_raw(p, "{\"x\": [", 0);
  expect_config_error_naming(open, {p.string(), "not valid JSON"});

  write_raw(p, "[1, 2]", 0);
  expect_config_error_naming(open, {p.string(), "object"});

  write_raw(p, R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8);
  expect_config_error_naming(open, {p.string(), "'w'", "dtype"});
  write_raw(p, R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", 8);
  expect_config_error_naming(open, {p.string(), "'w'", "shape"});
  write_raw(p, R"({"w": {"dtype": "F32", "shape": [2]}})", 8);
  expect_config_error_naming(open, {p.string(), "'w'", "data_offsets"});

  write_raw(p, R"({"q": {"dtype": "Q4", "shape": [8], "data_offsets": [0, 8]}})", 8);
  expect_config_error_naming(open, {p.string(), "'q'", "Q4", "unsupported"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);  // data truncated
  expect_config_error_naming(open, {p.string(), "'w'", "past the end"});

  write_raw(p, R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}})", 8);  // 3 x 2 != 8
  expect_config_error_naming(open, {p.string(), "'w'", "needs 6"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8);
  expect_config_error_naming(open, {p.string(), "'w'", "data_offsets"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8);
  expect_config_error_naming(open, {p.string(), "'w'", "shape"});

  // Overflowing shapes are caught, not wrapped around.
  write_raw(p, R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0);
  expect_config_error_naming(open, {p.string(), "'w'"});

  // A valid file with metadata and trailing header padding opens.
  write_raw(p, R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})"
               "      ",
            8);
  SafetensorsFile ok(p);
  EXPECT_EQ(ok.tensors().size(), 1u);
  EXPECT_EQ(ok.tensors().at("w").bytes, 8u);
  EXPECT_EQ(ok.path(), p);

  // Through a checkpoint, the error still names the file.
  const auto dir = tmp.path() / "ckpt";
  fs::create_directories(dir);
  std::ofstream(dir / "model.safetensors", std::ios::binary) << "abc";
  expect_config_error_naming([&] { Checkpoint::open(dir); }, {(dir / "model.safetensors").string()});
}

// Integer and bool tensors (an EAGLE-3 draft's vocabulary maps d2t and t2d) open with the file,
// with their sizes checked; reading one as floats is an error naming the tensor, file and dtype.
TEST(Safetensors, NonFloatTensorsOpenButDoNotReadAsFloats) {
  TempDir tmp;
  const auto dir = tmp.path() / "ckpt";
  fs::create_directories(dir);
  const auto file = dir / "model.safetensors";
  write_safetensors(file, {f32_tensor("w", {2}, {1.0f, 2.0f}), TensorToWrite{"d2t", DType::I64, {3}, std::vector<std::uint8_t>(24)},
                           TensorToWrite{"t2d", DType::BOOL, {5}, std::vector<std::uint8_t>(5)},
                           TensorToWrite{"q", DType::I8, {8}, std::vector<std::uint8_t>(8)}});
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.info("d2t").dtype, DType::I64);
  EXPECT_EQ(ckpt.info("d2t").bytes, 24u);
  EXPECT_EQ(ckpt.info("t2d").dtype, DType::BOOL);
  EXPECT_EQ(ckpt.read_f32("w"), (std::vector<float>{1.0f, 2.0f}));
  expect_config_error_naming([&] { ckpt.read_f32("d2t"); }, {file.string(), "'d2t'", "I64"});
  expect_config_error_naming([&] { ckpt.read_bf16("q"); }, {file.string(), "'q'", "I8"});

  // A size that does not match the dtype is still caught at open.
  write_raw(file, R"({"d2t": {"dtype": "I64", "shape": [3], "data_offsets": [0, 12]}})", 12);
  expect_config_error_naming([&] { Checkpoint::open(dir); }, {file.string(), "'d2t'", "needs 24"});
}

TEST(Safetensors, WriterRejectsInconsistentTensors) {
  TempDir tmp;
  TensorToWrite t = f32_tensor("x", {3}, {1.0f, 2.0f});  // 8 bytes for 3 floats
  EXPECT_THROW(write_safetensors(tmp.path() / "x.safetensors", {t}), std::invalid_argument);
  EXPECT_THROW(write_safetensors(tmp.path() / "x.safetensors", {f32_tensor("x", {1}, {1.0f}), f32_tensor("x", {1}, {1.0f})}),
               std::invalid_argument);
  EXPECT_THROW(write_safetensors(tmp.path() / "x.safetensors", {f32_tensor("__metadata__", {1}, {1.0f})}), std::invalid_argument);
  EXPECT_THROW(write_safetensors(tmp.path() / "no-dir" / "x.safetensors", {f32_tensor("x", {1}, {1.0f})}), ConfigError);
}
