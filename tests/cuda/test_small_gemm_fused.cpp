// small_gemm's fused epilogues (SwiGlu, RopeKvAppend) against the separate kernels they replace:
// a Store launch followed by launch_swiglu / launch_rope_kv_append, which have their own CPU
// references (test_swiglu, test_rope_kv_append). The fused results must be the same bits: the
// epilogue rounds to bf16 and applies the same device functions. Also the launcher's checks of
// the fused parameters.
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/rope_kv_append.cuh"
#include "kernels/small_gemm.cuh"
#include "kernels/swiglu.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;
using testing::random_bf16;

// A Store launch on contiguous X and W into Y with row stride y_stride.
kernels::SmallGemmParams gemm(const std::uint16_t* x, const std::uint16_t* w, std::uint16_t* y, std::int64_t tokens, std::int64_t out,
                              std::int64_t in, std::int64_t y_stride) {
  kernels::SmallGemmParams p = kernels::contiguous_small_gemm(x, w, tokens, out, in);
  p.y_bf16 = y;
  p.y_stride = y_stride;
  return p;
}

// act = SwiGLU(X Wgate_up^T) in one launch, against gate_up = X Wgate_up^T then launch_swiglu.
// The activation's padding columns (y_stride > ffn) must stay untouched.
void check_swiglu(std::int64_t ffn, std::int64_t in, std::int64_t tokens) {
  const std::string where = "ffn " + std::to_string(ffn) + " in " + std::to_string(in) + " tokens " + std::to_string(tokens);
  const std::int64_t act_stride = ffn + 8;
  DeviceBuffer<std::uint16_t> d_x(random_bf16(static_cast<std::size_t>(tokens * in), 31));
  DeviceBuffer<std::uint16_t> d_w(random_bf16(static_cast<std::size_t>(2 * ffn * in), 32, 0.0f, 0.05f));
  const std::uint16_t pad = 0x7fc1;
  const std::vector<std::uint16_t> padded(static_cast<std::size_t>(tokens * act_stride), pad);
  DeviceBuffer<std::uint16_t> d_gate_up(static_cast<std::size_t>(tokens * 2 * ffn)), d_separate(padded), d_fused(padded);

  kernels::launch_small_gemm(gemm(d_x.get(), d_w.get(), d_gate_up.get(), tokens, 2 * ffn, in, 2 * ffn), nullptr);
  kernels::launch_swiglu({d_gate_up.get(), d_separate.get(), tokens, ffn, 2 * ffn, act_stride}, nullptr);
  auto fused = gemm(d_x.get(), d_w.get(), d_fused.get(), tokens, 2 * ffn, in, act_stride);
  fused.epilogue = kernels::SmallGemmEpilogue::SwiGlu;
  kernels::launch_small_gemm(fused, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto want = d_separate.download(), got = d_fused.download();
  EXPECT_EQ(got, want) << where;
  std::int64_t written = 0;
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < ffn; ++j) written += got[static_cast<std::size_t>(t * act_stride + j)] != pad;
  EXPECT_GT(written, tokens * ffn * 9 / 10) << where;  // the comparison is not between two untouched buffers
}

struct RopeShape {
  std::int64_t q_heads, kv_heads, head_dim, in, tokens;
  bool with_v = true;
  std::int32_t cache_row = -1;
};

// QKV = X Wqkv^T, RoPE and the KV append in one launch, against a Store launch and
// launch_rope_kv_append: Y (with a padded row stride) and both caches, bit for bit. With a fixed
// cache row the positions reach 299,999 rad of angle, past 105,615 where sincosf takes its slow
// range reduction.
void check_rope(const RopeShape& c) {
  const std::string where = "heads " + std::to_string(c.q_heads) + "/" + std::to_string(c.kv_heads) + " head_dim " +
                            std::to_string(c.head_dim) + " tokens " + std::to_string(c.tokens) + (c.with_v ? "" : " keys only") +
                            " cache_row " + std::to_string(c.cache_row);
  const std::int64_t out = (c.q_heads + (c.with_v ? 2 : 1) * c.kv_heads) * c.head_dim, row_stride = out + 8;
  const std::int64_t max_requests = 3, max_context = 300000;
  const std::int64_t head_stride = 32 * c.head_dim;  // 32 cache rows a head: the rows below are 2 t + 1 < 32 (t < 16)
  const std::int64_t request_stride = c.kv_heads * head_stride;
  DeviceBuffer<std::uint16_t> d_x(random_bf16(static_cast<std::size_t>(c.tokens * c.in), 41));
  DeviceBuffer<std::uint16_t> d_w(random_bf16(static_cast<std::size_t>(out * c.in), 42, 0.0f, 0.05f));
  std::vector<float> freq(static_cast<std::size_t>(c.head_dim / 2));
  for (std::size_t i = 0; i < freq.size(); ++i) freq[i] = std::pow(500000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(c.head_dim));
  DeviceBuffer<float> d_freq(freq);
  // Cache rows are small (they index a 16-row cache); the rotation uses the positions, which
  // with cache_row >= 0 are free to be large. Without it the row is the position, so keep those small.
  std::mt19937 gen(43);
  std::vector<std::int32_t> positions(static_cast<std::size_t>(c.tokens)), slots(positions.size());
  for (std::size_t t = 0; t < positions.size(); ++t) {
    positions[t] = c.cache_row >= 0 ? static_cast<std::int32_t>(gen() % max_context) : static_cast<std::int32_t>(t * 2 + 1);
    slots[t] = static_cast<std::int32_t>(gen() % max_requests);
  }
  if (c.cache_row >= 0) {
    positions[0] = static_cast<std::int32_t>(max_context - 1);
    for (std::size_t t = 0; t < slots.size(); ++t) slots[t] = static_cast<std::int32_t>(t % max_requests);  // one token a slot row
  }
  DeviceBuffer<std::int32_t> d_pos(positions), d_slots(slots);
  const std::vector<std::uint16_t> y0(static_cast<std::size_t>(c.tokens * row_stride), 0x7fc1);
  const std::vector<std::uint16_t> cache0 = random_bf16(static_cast<std::size_t>(max_requests * request_stride), 44);
  DeviceBuffer<std::uint16_t> y_sep(y0), k_sep(cache0), v_sep(cache0), y_fused(y0), k_fused(cache0), v_fused(cache0);

  auto rope = [&](std::uint16_t* y, std::uint16_t* k, std::uint16_t* v) {
    kernels::RopeKvAppendParams r;
    r.qkv = y;
    r.k_cache = k;
    r.v_cache = c.with_v ? v : nullptr;
    r.inv_freq = d_freq.get();
    r.positions = d_pos.get();
    r.slots = d_slots.get();
    r.tokens = c.tokens;
    r.row_stride = row_stride;
    r.q_heads = c.q_heads;
    r.kv_heads = c.kv_heads;
    r.head_dim = c.head_dim;
    r.cache_request_stride = request_stride;
    r.cache_head_stride = head_stride;
    r.attention_factor = 1.0f;
    r.cache_row = c.cache_row;
    return r;
  };
  kernels::launch_small_gemm(gemm(d_x.get(), d_w.get(), y_sep.get(), c.tokens, out, c.in, row_stride), nullptr);
  kernels::launch_rope_kv_append(rope(y_sep.get(), k_sep.get(), v_sep.get()), nullptr);
  auto fused = gemm(d_x.get(), d_w.get(), y_fused.get(), c.tokens, out, c.in, row_stride);
  fused.epilogue = kernels::SmallGemmEpilogue::RopeKvAppend;
  fused.rope = rope(y_fused.get(), k_fused.get(), v_fused.get());
  kernels::launch_small_gemm(fused, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(y_fused.download(), y_sep.download()) << where;
  const auto k = k_fused.download();
  EXPECT_EQ(k, k_sep.download()) << where;
  EXPECT_NE(k, cache0) << where;  // the append wrote something
  EXPECT_EQ(v_fused.download(), v_sep.download()) << where;
}

TEST(SmallGemmFused, SwiGluEqualsTheSeparateKernels) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t tokens : {1, 3, 8, 13, 16}) check_swiglu(14336, 4096, tokens);  // Llama-3.1-8B's MLP
  check_swiglu(1536, 576, 5);   // SmolLM2-135M's
  check_swiglu(24, 40, 8);      // 3 blocks; in not a multiple of 32
}

TEST(SmallGemmFused, RopeKvAppendEqualsTheSeparateKernels) {
  SPECONTEXT_REQUIRE_GPU();
  for (std::int64_t tokens : {1, 3, 8, 13, 16}) check_rope({32, 8, 128, 4096, tokens});  // Llama-3.1-8B (GQA)
  check_rope({9, 3, 64, 576, 5});                                             // SmolLM2-135M
  check_rope({4, 4, 32, 64, 2});                                              // MHA, head_dim 32
  check_rope({8, 1, 128, 256, 7});                                            // MQA
  check_rope({32, 8, 128, 4096, 6, false});                                   // keys only (no V)
  check_rope({32, 8, 128, 4096, 3, true, 15});                                // a fixed cache row, large positions
}

}  // namespace

// The checks run before any CUDA call, so this needs no GPU. The pointers are never dereferenced.
TEST(SmallGemmFused, RejectsBadParameters) {
  alignas(16) static std::uint16_t host[64];
  alignas(16) static float freq[64];
  alignas(16) static std::int32_t ints[8];
  auto expect_rejected = [](const kernels::SmallGemmParams& p, const std::string& field) {
    try {
      kernels::launch_small_gemm(p, nullptr);
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + field + "'"), std::string::npos) << e.what();
    }
  };
  kernels::SmallGemmParams swiglu = gemm(host, host, host, 2, 32, 16, 16);
  swiglu.epilogue = kernels::SmallGemmEpilogue::SwiGlu;
  auto p = swiglu;
  p.out = 24;  // ffn 12: not a multiple of 8
  expect_rejected(p, "out");
  p = swiglu;
  p.y_stride = 15;  // less than ffn
  expect_rejected(p, "y_stride");
  p = swiglu;
  p.y_bf16 = nullptr;
  p.y_f32 = freq;
  expect_rejected(p, "y_bf16");
  p = swiglu;
  p.epilogue = static_cast<kernels::SmallGemmEpilogue>(7);
  expect_rejected(p, "epilogue");

  kernels::SmallGemmParams rope = gemm(host, host, host, 2, 3 * 32, 16, 3 * 32);  // 1 q head, 1 kv head, head_dim 32
  rope.epilogue = kernels::SmallGemmEpilogue::RopeKvAppend;
  rope.rope.qkv = host;
  rope.rope.k_cache = host;
  rope.rope.v_cache = host;
  rope.rope.inv_freq = freq;
  rope.rope.positions = ints;
  rope.rope.slots = ints;
  rope.rope.tokens = 2;
  rope.rope.row_stride = 3 * 32;
  rope.rope.q_heads = 1;
  rope.rope.kv_heads = 1;
  rope.rope.head_dim = 32;
  rope.rope.cache_head_stride = 32;
  rope.rope.cache_request_stride = 32;
  p = rope;
  p.rope.qkv = host + 8;
  expect_rejected(p, "rope.qkv");
  p = rope;
  p.y_stride = p.rope.row_stride + 8;
  expect_rejected(p, "rope.row_stride");
  p = rope;
  p.rope.tokens = 1;
  expect_rejected(p, "rope.tokens");
  p = rope;
  p.out = 4 * 32;  // a head more than the 3 of rope
  p.y_stride = p.rope.row_stride = 4 * 32;
  expect_rejected(p, "out");
  p = rope;
  p.rope.head_dim = 8;  // 12 heads x 8: the shape fits, the pairing does not
  p.rope.q_heads = 10;
  p.rope.cache_head_stride = 8;
  p.rope.cache_request_stride = 8;
  expect_rejected(p, "rope.head_dim");
  p = rope;
  p.rope.inv_freq = nullptr;  // the RoPE parameters' own checks (kernels/rope_kv_append.cuh)
  EXPECT_THROW(kernels::launch_small_gemm(p, nullptr), std::invalid_argument);
}

}  // namespace specontext
