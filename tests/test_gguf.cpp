// GGUF files: the reader (every metadata type, alignment, dequantisation against the `gguf`
// package's), the llama.cpp -> Hugging Face mapping (the F32 conversion of the llama-gqa fixture
// loads to its safetensors weights and reproduces transformers' logits, which proves the q/k
// un-permute and the Llama 3 RoPE recovered from rope_freqs.weight), errors on broken files, and
// the real SmolLM2-135M-Instruct Q4_1 file when the set-up step has fetched it.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/cpu_backend.hpp"
#include "engine/generator.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_model.hpp"
#include "engine/rope.hpp"
#include "tests/expect_config_error.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/temp_dir.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using testing::expect_config_error;
using testing::TempDir;

fs::path gguf_fixture(const std::string& name) { return fs::path(SPECONTEXT_FIXTURES_DIR) / "gguf" / name; }

const fs::path kSmolLM2 = testing::smollm2_gguf();

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

// Builds GGUF files byte by byte (little-endian), for crafted and broken files.
struct GgufBytes {
  std::string b;
  void raw(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
  }
  void u32(std::uint32_t v) { raw(v, 4); }
  void u64(std::uint64_t v) { raw(v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    b += s;
  }
  void header(std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
    b += "GGUF";
    u32(version);
    u64(tensors);
    u64(kvs);
  }
  void key(const std::string& k, std::uint32_t type) {
    str(k);
    u32(type);
  }
  void kv_string(const std::string& k, const std::string& v) {
    key(k, 8);
    str(v);
  }
  void kv_u32(const std::string& k, std::uint32_t v) {
    key(k, 4);
    u32(v);
  }
  void tensor_info(const std::string& name, const std::vector<std::uint64_t>& dims, std::uint32_t type, std::uint64_t offset) {
    str(name);
    u32(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) u64(d);
    u32(type);
    u64(offset);
  }
  void pad(std::size_t alignment) {
    while (b.size() % alignment) b.push_back('\0');
  }
};

// A file with one metadata key and one F32 tensor of `dims` (its data included unless told).
std::string one_tensor_file(std::uint32_t type, const std::vector<std::uint64_t>& dims, std::uint64_t offset, std::size_t data_bytes,
                            const std::string& arch = "llama") {
  GgufBytes g;
  g.header(3, 1, 1);
  g.kv_string("general.architecture", arch);
  g.tensor_info("blk.0.attn_q.weight", dims, type, offset);
  g.pad(32);
  g.b.append(data_bytes, '\0');
  return g.b;
}

// Rewrites the type id in the tensor table entry of `tensor` (a copy of a real file).
std::string with_tensor_type(std::string bytes, const std::string& tensor, std::uint32_t type) {
  std::string needle(8, '\0');
  for (int i = 0; i < 8; ++i) needle[static_cast<std::size_t>(i)] = static_cast<char>(static_cast<std::uint64_t>(tensor.size()) >> (8 * i));
  needle += tensor;
  const std::size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos) << tensor;
  std::size_t p = at + needle.size();
  std::uint32_t n_dims = 0;
  std::memcpy(&n_dims, bytes.data() + p, 4);
  p += 4 + 8 * n_dims;
  for (int i = 0; i < 4; ++i) bytes[p + static_cast<std::size_t>(i)] = static_cast<char>(type >> (8 * i));
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The reader

void read_every_value_type(std::uint32_t version) {
  TempDir dir("gguf");
  GgufBytes g;
  g.header(version, 1, 16);
  g.key("u8", 0), g.raw(200, 1);
  g.key("i8", 1), g.raw(static_cast<std::uint8_t>(-5), 1);
  g.key("u16", 2), g.raw(60000, 2);
  g.key("i16", 3), g.raw(static_cast<std::uint16_t>(-300), 2);
  g.kv_u32("u32", 4000000000u);
  g.key("i32", 5), g.u32(static_cast<std::uint32_t>(-70000));
  g.key("f32", 6), g.u32(std::bit_cast<std::uint32_t>(1e-5f));
  g.key("bool", 7), g.raw(1, 1);
  g.kv_string("string", "smollm");
  g.key("strings", 9), g.u32(8), g.u64(3), g.str("a"), g.str(""), g.str("Ġthe");
  g.key("ints", 9), g.u32(5), g.u64(2), g.u32(static_cast<std::uint32_t>(-1)), g.u32(7);
  g.key("u64", 10), g.u64(1ull << 40);
  g.key("i64", 11), g.u64(static_cast<std::uint64_t>(-(1ll << 40)));
  g.key("f64", 12), g.u64(std::bit_cast<std::uint64_t>(0.1));
  g.key("general.alignment", 4), g.u32(64);
  g.kv_string("general.architecture", "llama");
  g.tensor_info("t", {3, 2}, 0, 0);  // ne = [3, 2]: a [2, 3] matrix
  g.pad(64);
  const std::size_t data_at = g.b.size();
  for (int i = 0; i < 6; ++i) g.u32(std::bit_cast<std::uint32_t>(static_cast<float>(i) + 0.5f));
  write_bytes(dir.path() / "all.gguf", g.b);

  const GgufFile f(dir.path() / "all.gguf");
  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.integer("u8"), 200);
  EXPECT_EQ(f.integer("i8"), -5);
  EXPECT_EQ(f.integer("u16"), 60000);
  EXPECT_EQ(f.integer("i16"), -300);
  EXPECT_EQ(f.integer("u32"), 4000000000ll);
  EXPECT_EQ(f.integer("i32"), -70000);
  EXPECT_EQ(f.number("f32"), 1e-5);  // the shortest decimal of the float, as a config.json would hold it
  EXPECT_EQ(f.value("f32").type, GgufValueType::Float32);
  EXPECT_TRUE(f.boolean("bool"));
  EXPECT_EQ(f.string("string"), "smollm");
  EXPECT_EQ(f.strings("strings"), (std::vector<std::string>{"a", "", "Ġthe"}));
  const auto& ints = std::get<std::vector<GgufValue>>(f.value("ints").value);
  ASSERT_EQ(ints.size(), 2u);
  EXPECT_EQ(f.value("ints").element_type, GgufValueType::Int32);
  EXPECT_EQ(std::get<std::int64_t>(ints[0].value), -1);
  EXPECT_EQ(f.integer("u64"), 1ll << 40);
  EXPECT_EQ(f.integer("i64"), -(1ll << 40));
  EXPECT_EQ(f.number("f64"), 0.1);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset(), data_at);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensor("t").shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.read_f32("t"), (std::vector<float>{0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f}));
  expect_config_error([&] { (void)f.string("u8"); }, "all.gguf", "u8");
  expect_config_error([&] { (void)f.integer("missing.key"); }, "all.gguf", "missing.key");
  expect_config_error([&] { (void)f.strings("ints"); }, "all.gguf", "ints");
}

// Versions 2 and 3 share the layout (64-bit counts and lengths); 3 only added big-endian files.
TEST(GgufReader, ReadsEveryMetadataValueTypeAndTheAlignment) {
  for (std::uint32_t version : {2u, 3u}) {
    SCOPED_TRACE("version " + std::to_string(version));
    read_every_value_type(version);
  }
}

// Values produced by the `gguf` package's dequantize (tests/fixtures/gguf/make_gguf_fixtures.py).
TEST(GgufReader, DequantisesQ8_0AndQ4_1LikeTheGgufPackage) {
  std::ifstream in(gguf_fixture("expected.json"));
  const nlohmann::json e = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& [file, tensors] : e.at("files").items()) {
    const GgufFile f(gguf_fixture(file));
    for (const auto& [name, t] : tensors.items()) {
      EXPECT_EQ(ggml_type_name(f.tensor(name).type), t.at("type").get<std::string>()) << file << " " << name;
      const std::vector<float> v = f.read_f32(name);
      const auto idx = t.at("indices").get<std::vector<std::size_t>>();
      const auto want = t.at("values").get<std::vector<double>>();
      for (std::size_t k = 0; k < idx.size(); ++k)
        EXPECT_FLOAT_EQ(v.at(idx[k]), static_cast<float>(want[k])) << file << " " << name << " [" << idx[k] << "]";
      double sum = 0, sum_abs = 0;
      for (float x : v) sum += x, sum_abs += std::abs(x);
      EXPECT_NEAR(sum, t.at("sum").get<double>(), 1e-9 * sum_abs) << file << " " << name;
      EXPECT_NEAR(sum_abs, t.at("sum_abs").get<double>(), 1e-9 * sum_abs) << file << " " << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * 16);  // per file: token_embd, output and 2 x 7 layer matrices
}

TEST(GgufReader, RecognisesGgufPaths) {
  TempDir dir("gguf");
  EXPECT_TRUE(is_gguf_path(gguf_fixture("llama-gqa-f32.gguf")));
  EXPECT_TRUE(is_gguf_path("no/such/model.GGUF"));
  EXPECT_FALSE(is_gguf_path(testing::hf_fixture_dir("llama-gqa")));
  fs::copy_file(gguf_fixture("llama-gqa-q4_1.gguf"), dir.path() / "renamed.bin");
  EXPECT_TRUE(is_gguf_path(dir.path() / "renamed.bin"));  // by its magic
}

// ---------------------------------------------------------------------------------------------
// The llama-gqa fixture converted by llama.cpp's rules

TEST(GgufModel, F32ConversionLoadsTheSafetensorsWeightsAndConfig) {
  const testing::HfFixture hf = testing::load_hf_fixture("llama-gqa");
  const GgufFile f(gguf_fixture("llama-gqa-f32.gguf"));
  const ModelConfig c = gguf_engine_config(f);
  EXPECT_EQ(c.shape.name, "llama-gqa-f32");
  EXPECT_EQ(c.shape.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.shape.layers, hf.config.shape.layers);
  EXPECT_EQ(c.shape.hidden, hf.config.shape.hidden);
  EXPECT_EQ(c.shape.q_heads, hf.config.shape.q_heads);
  EXPECT_EQ(c.shape.kv_heads, hf.config.shape.kv_heads);
  EXPECT_EQ(c.shape.head_dim, 32);  // from attention.key_length: not hidden / heads = 16
  EXPECT_EQ(c.shape.ffn, hf.config.shape.ffn);
  EXPECT_EQ(c.shape.vocab, hf.config.shape.vocab);
  EXPECT_EQ(c.shape.max_positions, hf.config.shape.max_positions);
  EXPECT_FALSE(c.shape.tied_embeddings);
  EXPECT_EQ(c.rms_norm_eps, hf.config.rms_norm_eps);
  EXPECT_EQ(c.rope.theta, hf.config.rope.theta);
  // Llama 3 scaling from rope_freqs.weight: other (equivalent) parameters, the same frequencies.
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  const std::vector<float> got = rope_inverse_frequencies(c), want = rope_inverse_frequencies(hf.config);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * want[i]) << "frequency " << i;

  const ModelWeights w = gguf_weights(c, f);
  EXPECT_EQ(w.embed.data, hf.weights.embed.data);
  EXPECT_EQ(w.lm_head.data, hf.weights.lm_head.data);
  EXPECT_EQ(w.final_norm, hf.weights.final_norm);
  ASSERT_EQ(w.layers.size(), hf.weights.layers.size());
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights &a = w.layers[i], &b = hf.weights.layers[i];
    EXPECT_EQ(a.input_norm, b.input_norm) << i;
    EXPECT_EQ(a.post_attention_norm, b.post_attention_norm) << i;
    for (auto [x, y, what] : {std::tuple{&a.q, &b.q, "q"}, {&a.k, &b.k, "k"}, {&a.v, &b.v, "v"}, {&a.o, &b.o, "o"},
                              {&a.gate, &b.gate, "gate"}, {&a.up, &b.up, "up"}, {&a.down, &b.down, "down"}}) {
      EXPECT_EQ(x->rows, y->rows) << i << " " << what;
      EXPECT_EQ(x->cols, y->cols) << i << " " << what;
      EXPECT_TRUE(x->data == y->data) << "layer " << i << " " << what << " differs from the safetensors weights";
    }
  }
}

TEST(GgufModel, F32ConversionReproducesTransformersLogits) {
  const testing::HfFixture hf = testing::load_hf_fixture("llama-gqa");
  const GgufFile f(gguf_fixture("llama-gqa-f32.gguf"));
  const ModelConfig c = gguf_engine_config(f);
  CpuBackend cpu(c, gguf_weights(c, f), 1, 4096);
  const std::int64_t vocab = c.shape.vocab;
  for (std::size_t p = 0; p < hf.prompts.size(); ++p) {
    cpu.reset(0);
    const std::vector<float> all = cpu.prefill_all_logits(0, hf.prompts[p]);
    double worst = 0;
    for (std::size_t k = 0; k < hf.positions[p].size(); ++k) {
      const auto pos = static_cast<std::size_t>(hf.positions[p][k]);
      for (std::int64_t v = 0; v < vocab; ++v) {
        const double want = hf.logits[p][k][static_cast<std::size_t>(v)];
        const double got = all[pos * static_cast<std::size_t>(vocab) + static_cast<std::size_t>(v)];
        worst = std::max(worst, std::abs(got - want) / (1e-3 + 1e-5 * std::abs(want)));  // as test_hf_fixtures.cpp
      }
    }
    EXPECT_LE(worst, 1.0) << "prompt " << p << " (error in units of the tolerance)";
    GenerateOptions o;
    o.max_new = static_cast<int>(hf.greedy[p].size());
    cpu.reset(0);
    EXPECT_EQ(generate(cpu, {hf.prompts[p]}, o).tokens[0], hf.greedy[p]) << "prompt " << p;
  }
}

// Quantised weights move the logits by a small fraction of their spread and of their largest value
// (the fixture's LM head has log-normal row scales, so its logits reach ~950 with a spread of ~21),
// and keep the top token at nearly every position (measured: 39 of 40 for both; the one that
// changes is a near-tie).
TEST(GgufModel, QuantisedConversionsStayCloseToTheF32Logits) {
  const testing::HfFixture hf = testing::load_hf_fixture("llama-gqa");
  auto logits = [&](const std::string& file) {
    const GgufFile f(gguf_fixture(file));
    const ModelConfig c = gguf_engine_config(f);
    CpuBackend cpu(c, gguf_weights(c, f), 1, 256);
    return cpu.prefill_all_logits(0, hf.prompts[1]);
  };
  const std::vector<float> ref = logits("llama-gqa-f32.gguf");
  double mean = 0, var = 0, largest = 0;
  for (float x : ref) mean += x, largest = std::max(largest, static_cast<double>(std::abs(x)));
  mean /= static_cast<double>(ref.size());
  for (float x : ref) var += (x - mean) * (x - mean);
  const double spread = std::sqrt(var / static_cast<double>(ref.size()));
  const auto vocab = static_cast<std::size_t>(hf.config.shape.vocab);
  // Measured: Q8_0 0.8% (rms / spread) and 0.7% (max / largest); Q4_1 4.0% and 4.0%.
  for (const auto& [file, limit] : {std::pair{"llama-gqa-q8_0.gguf", 0.02}, {"llama-gqa-q4_1.gguf", 0.08}}) {
    const std::vector<float> got = logits(file);
    ASSERT_EQ(got.size(), ref.size());
    double worst = 0, squares = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double d = static_cast<double>(got[i]) - ref[i];
      worst = std::max(worst, std::abs(d));
      squares += d * d;
    }
    const std::size_t rows = ref.size() / vocab;
    std::size_t same_top1 = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      const auto a = ref.begin() + static_cast<std::ptrdiff_t>(r * vocab);
      const auto b = got.begin() + static_cast<std::ptrdiff_t>(r * vocab);
      same_top1 += std::max_element(a, a + static_cast<std::ptrdiff_t>(vocab)) - a ==
                   std::max_element(b, b + static_cast<std::ptrdiff_t>(vocab)) - b;
    }
    EXPECT_LE(std::sqrt(squares / static_cast<double>(ref.size())) / spread, limit) << file << ": rms change / spread";
    EXPECT_LE(worst / largest, limit) << file << ": largest change / largest logit";
    EXPECT_GE(same_top1 * 20, rows * 19) << file << ": top-1 token agrees at " << same_top1 << " of " << rows << " positions";
  }
}

// Llama 3 scaling lives only in rope_freqs.weight; the parameters recovered from it must give the
// frequencies of the original parameters, whatever their count of "smooth" (interpolated) entries.
TEST(GgufModel, RecoversLlama3RopeFromRopeFreqs) {
  TempDir dir("gguf");
  struct Case {
    double theta, factor, low, high;
    long long original, head_dim;
  };
  // Llama 3.1 (8B), Llama 3.2 (factor 32) and a case with a single interpolated frequency.
  for (const Case& k : {Case{500000, 8, 1, 4, 8192, 128}, Case{500000, 32, 1, 4, 8192, 64}, Case{10000, 4, 1, 1.5, 2048, 16}}) {
    ModelConfig want;
    want.origin = "want";
    want.shape.head_dim = k.head_dim;
    want.rope = {k.theta, RopeScaling::Llama3, k.factor, k.low, k.high, k.original};
    const std::vector<float> inv = rope_inverse_frequencies(want);
    GgufBytes g;
    g.header(3, 1, 8);
    g.kv_string("general.architecture", "llama");
    g.kv_u32("llama.vocab_size", 32);
    g.kv_u32("llama.block_count", 1);
    g.kv_u32("llama.embedding_length", static_cast<std::uint32_t>(2 * k.head_dim));
    g.kv_u32("llama.feed_forward_length", 64);
    g.kv_u32("llama.attention.head_count", 2);
    g.key("llama.rope.freq_base", 6), g.u32(std::bit_cast<std::uint32_t>(static_cast<float>(k.theta)));
    g.key("llama.attention.layer_norm_rms_epsilon", 6), g.u32(std::bit_cast<std::uint32_t>(1e-5f));
    g.tensor_info("rope_freqs.weight", {static_cast<std::uint64_t>(k.head_dim / 2)}, 0, 0);
    g.pad(32);
    for (long long i = 0; i < k.head_dim / 2; ++i) {
      const double base = std::pow(k.theta, -2.0 * static_cast<double>(i) / static_cast<double>(k.head_dim));
      g.u32(std::bit_cast<std::uint32_t>(static_cast<float>(base / inv[static_cast<std::size_t>(i)])));
    }
    write_bytes(dir.path() / "rope.gguf", g.b);
    const ModelConfig c = gguf_engine_config(GgufFile(dir.path() / "rope.gguf"));
    EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
    const std::vector<float> got = rope_inverse_frequencies(c);
    for (std::size_t i = 0; i < inv.size(); ++i) EXPECT_NEAR(got[i], inv[i], 1e-6 * inv[i]) << "factor " << k.factor << ", frequency " << i;

    // Divisors that no Llama 3 scaling produces are rejected, naming the tensor.
    std::string bad = g.b;
    const float odd = 1.7f;
    std::memcpy(bad.data() + bad.size() - 4 * static_cast<std::size_t>(k.head_dim / 2) + 4, &odd, 4);  // divisor 1 of 1 .. factor
    write_bytes(dir.path() / "bad-rope.gguf", bad);
    expect_config_error([&] { (void)gguf_engine_config(GgufFile(dir.path() / "bad-rope.gguf")); }, "bad-rope.gguf", "rope_freqs.weight");
  }
}

// ---------------------------------------------------------------------------------------------
// Broken files

TEST(GgufErrors, BadMagic) {
  TempDir dir("gguf");
  std::string bytes = read_bytes(gguf_fixture("llama-gqa-q4_1.gguf"));
  bytes.replace(0, 4, "GGML");
  write_bytes(dir.path() / "magic.gguf", bytes);
  expect_config_error([&] { GgufFile f(dir.path() / "magic.gguf"); }, "magic.gguf", "magic");
  write_bytes(dir.path() / "tiny.gguf", "GGU");
  expect_config_error([&] { GgufFile f(dir.path() / "tiny.gguf"); }, "tiny.gguf", "magic");
}

TEST(GgufErrors, UnsupportedVersion) {
  TempDir dir("gguf");
  for (std::uint32_t v : {1u, 4u, 0x03000000u /* version 3 written big-endian */}) {
    GgufBytes g;
    g.header(v, 0, 0);
    write_bytes(dir.path() / "version.gguf", g.b);
    expect_config_error([&] { GgufFile f(dir.path() / "version.gguf"); }, "version.gguf", "version");
  }
}

TEST(GgufErrors, TruncatedHeaderNamesWhereItEnds) {
  TempDir dir("gguf");
  const std::string bytes = read_bytes(gguf_fixture("llama-gqa-q4_1.gguf"));
  for (std::size_t keep : {std::size_t{12}, std::size_t{60}, std::size_t{300}}) {
    write_bytes(dir.path() / "cut.gguf", bytes.substr(0, keep));
    try {
      GgufFile f(dir.path() / "cut.gguf");
      ADD_FAILURE() << "a file cut at " << keep << " bytes opened";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("cut.gguf: field '"), std::string::npos) << what;
      EXPECT_NE(what.find("truncated"), std::string::npos) << what;
    }
  }
}

TEST(GgufErrors, TruncatedDataNamesTheTensor) {
  TempDir dir("gguf");
  const std::string bytes = read_bytes(gguf_fixture("llama-gqa-f32.gguf"));
  write_bytes(dir.path() / "short.gguf", bytes.substr(0, bytes.size() - 100));
  expect_config_error([&] { GgufFile f(dir.path() / "short.gguf"); }, "short.gguf", "output.weight");
}

TEST(GgufErrors, TensorPastTheEnd) {
  TempDir dir("gguf");
  write_bytes(dir.path() / "past.gguf", one_tensor_file(0, {32}, 1 << 20, 128));
  expect_config_error([&] { GgufFile f(dir.path() / "past.gguf"); }, "past.gguf", "blk.0.attn_q.weight");
}

TEST(GgufErrors, TypeIdGgmlDoesNotDefine) {
  TempDir dir("gguf");
  write_bytes(dir.path() / "type99.gguf", one_tensor_file(99, {32}, 0, 128));
  try {
    GgufFile f(dir.path() / "type99.gguf");
    ADD_FAILURE() << "opened";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'blk.0.attn_q.weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("type id 99"), std::string::npos) << e.what();
  }
}

TEST(GgufErrors, UnsupportedTensorTypeNamedWithItsId) {
  TempDir dir("gguf");
  // A Q5_K tensor opens (its size is known) but cannot be read.
  write_bytes(dir.path() / "q5k.gguf", one_tensor_file(13, {256}, 0, 176));
  const GgufFile f(dir.path() / "q5k.gguf");
  try {
    (void)f.read_f32("blk.0.attn_q.weight");
    ADD_FAILURE() << "read a Q5_K tensor";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("q5k.gguf: field 'blk.0.attn_q.weight'"), std::string::npos) << what;
    EXPECT_NE(what.find("Q5_K (id 13)"), std::string::npos) << what;
  }
  // In a model: gguf_weights refuses before reading anything. ffn_down's rows (256) hold whole Q5_K blocks.
  const std::string model = with_tensor_type(read_bytes(gguf_fixture("llama-gqa-f32.gguf")), "blk.1.ffn_down.weight", 13);
  write_bytes(dir.path() / "model-q5k.gguf", model);
  const GgufFile m(dir.path() / "model-q5k.gguf");
  const ModelConfig c = gguf_engine_config(m);
  expect_config_error([&] { (void)gguf_weights(c, m); }, "model-q5k.gguf", "blk.1.ffn_down.weight");
}

TEST(GgufErrors, WrongArchitectureMissingAndUnexpectedTensors) {
  TempDir dir("gguf");
  write_bytes(dir.path() / "qwen.gguf", one_tensor_file(0, {32}, 0, 128, "qwen2"));
  expect_config_error([&] { (void)gguf_engine_config(GgufFile(dir.path() / "qwen.gguf")); }, "qwen.gguf", "general.architecture");

  std::string bytes = read_bytes(gguf_fixture("llama-gqa-f32.gguf"));
  const std::size_t at = bytes.find("blk.1.ffn_up.weight");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 19, "blk.1.ffn_xx.weight");
  write_bytes(dir.path() / "renamed.gguf", bytes);
  const GgufFile f(dir.path() / "renamed.gguf");
  const ModelConfig c = gguf_engine_config(f);
  expect_config_error([&] { (void)gguf_weights(c, f); }, "renamed.gguf", "blk.1.ffn_up.weight");

  // A config of one layer against two layers of tensors: blk.1.* is not implied.
  ModelConfig one = c;
  one.shape.layers = 1;
  expect_config_error([&] { (void)gguf_weights(one, GgufFile(gguf_fixture("llama-gqa-f32.gguf"))); }, "llama-gqa-f32.gguf",
                      "blk.1.attn_norm.weight");
}

// ---------------------------------------------------------------------------------------------
// The real model (scripts/fetch_smollm2.sh places it; skipped when absent)

TEST(GgufSmolLM2, LoadsAndDecodesOnTheCpu) {
  if (!fs::exists(kSmolLM2)) GTEST_SKIP() << kSmolLM2 << " is absent (scripts/fetch_smollm2.sh fetches it)";
  const GgufFile f(kSmolLM2);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.strings("tokenizer.ggml.tokens").size(), 49152u);
  // Spot values from the `gguf` package's dequantize of this file.
  const std::vector<float> q = f.read_f32("blk.0.attn_q.weight");  // Q4_1
  EXPECT_FLOAT_EQ(q[0], -0.0963134765625f);
  EXPECT_FLOAT_EQ(q[15], 0.537841796875f);
  EXPECT_FLOAT_EQ(q[16], -0.22314453125f);
  EXPECT_FLOAT_EQ(q[331775], -0.255859375f);
  const std::vector<float> e = f.read_f32("token_embd.weight");  // Q8_0
  EXPECT_FLOAT_EQ(e[1], 0.032978057861328125f);
  EXPECT_FLOAT_EQ(e[28311551], -0.0417022705078125f);

  const ModelConfig c = gguf_engine_config(f);
  EXPECT_EQ(c.shape.layers, 30);
  EXPECT_EQ(c.shape.hidden, 576);
  EXPECT_EQ(c.shape.ffn, 1536);
  EXPECT_EQ(c.shape.q_heads, 9);
  EXPECT_EQ(c.shape.kv_heads, 3);
  EXPECT_EQ(c.shape.head_dim, 64);
  EXPECT_EQ(c.shape.vocab, 49152);
  EXPECT_EQ(c.shape.max_positions, 8192);
  EXPECT_TRUE(c.shape.tied_embeddings);
  EXPECT_EQ(c.rope.theta, 100000.0);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});

  CpuBackend cpu(c, gguf_weights(c, f), 1, 64);
  std::vector<float> logits = cpu.prefill(0, {504, 3575, 282, 4649});  // "The capital of France"
  std::vector<int> tokens;
  for (int step = 0; step < 4; ++step) {
    ASSERT_EQ(static_cast<std::int64_t>(logits.size()), c.shape.vocab);
    for (float x : logits) ASSERT_TRUE(std::isfinite(x)) << "step " << step;
    tokens.push_back(static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    logits = cpu.decode({0}, {tokens.back()});
  }
  EXPECT_EQ(cpu.length(0), 8);
  EXPECT_EQ(tokens[0], 314) << "' is' after 'The capital of France'";
}

}  // namespace
}  // namespace specontext
