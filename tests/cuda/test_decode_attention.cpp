// kernels/decode_attention against its CPU reference (normalised MSE on the bf16 output), over
// GQA/MQA/MHA, every head_dim, lengths that straddle chunk boundaries and one long context, in
// dense and sparse (index-list) mode; sparse mode listing rows 0 .. len - 1 against dense mode
// bit for bit; history_ready's early reads behind RoPE + KV append; and the reference itself
// against hand-computed examples.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

#include "kernels/decode_attention.cuh"
#include "kernels/random_hash.hpp"
#include "kernels/reference/decode_attention.hpp"
#include "kernels/rope_kv_append.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

constexpr std::uint16_t kBf16NaN = 0x7fc0;

struct DecodeCase {
  int q_heads, kv_heads, head_dim;
  std::vector<int> lengths;  // one request each
  int max_context;
  int max_length = 0;  // the launch's hint (0: none)
  float q_std = 1.5f;  // larger q, peakier softmax
};

// Runs the kernel and the reference on one case. The query rows sit in a fused QKV buffer, the
// output rows are wider than the heads (the pad must stay untouched), requests use permuted
// cache rows, and every cache element a request must not read is NaN, so reading past a length
// poisons the output.
void check_decode(const DecodeCase& c, std::uint64_t seed) {
  const int requests = static_cast<int>(c.lengths.size());
  const int max_requests = requests + 2;
  const std::int64_t hd = c.head_dim;
  const std::int64_t head_stride = c.max_context * hd;
  const std::int64_t request_stride = c.kv_heads * head_stride;
  const std::int64_t q_stride = (c.q_heads + 2 * c.kv_heads) * hd;
  const std::int64_t out_stride = c.q_heads * hd + 8;

  std::vector<std::int32_t> slots(requests), lengths(c.lengths.begin(), c.lengths.end());
  for (int i = 0; i < requests; ++i) slots[i] = (i * 5 + 1) % max_requests;
  if (std::gcd(5, max_requests) != 1) std::iota(slots.begin(), slots.end(), 1);

  std::vector<std::uint16_t> q(static_cast<std::size_t>(requests * q_stride));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = ref::float_to_bf16(c.q_std * rng::normal(seed, static_cast<std::int64_t>(i)));
  std::vector<std::uint16_t> k(static_cast<std::size_t>(max_requests * request_stride), kBf16NaN), v(k.size(), kBf16NaN);
  for (int i = 0; i < requests; ++i)
    for (int kh = 0; kh < c.kv_heads; ++kh)
      for (std::int64_t e = 0; e < std::max(0, lengths[i]) * hd; ++e) {
        const std::int64_t at = slots[i] * request_stride + kh * head_stride + e;
        k[at] = ref::float_to_bf16(rng::normal(seed + 1, at));
        v[at] = ref::float_to_bf16(rng::normal(seed + 2, at));
      }

  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ref::DecodeAttentionParams rp;
  rp.q = q.data();
  rp.q_row_stride = q_stride;
  rp.k_cache = k.data();
  rp.v_cache = v.data();
  rp.kv_request_stride = request_stride;
  rp.kv_head_stride = head_stride;
  rp.slots = slots.data();
  rp.lengths = lengths.data();
  rp.requests = requests;
  rp.q_heads = c.q_heads;
  rp.kv_heads = c.kv_heads;
  rp.head_dim = c.head_dim;
  rp.scale = scale;
  const auto want = ref::decode_attention(rp);

  DeviceBuffer<std::uint16_t> dq(q), dk(k), dv(v);
  DeviceBuffer<std::int32_t> dslots(slots), dlengths(lengths);
  const std::uint16_t kPad = 0x1234;
  DeviceBuffer<std::uint16_t> dout(std::vector<std::uint16_t>(static_cast<std::size_t>(requests * out_stride), kPad));
  const std::size_t ws_bytes = kernels::decode_attention_workspace_bytes(requests, c.q_heads, c.head_dim, c.max_context);
  DeviceBuffer<float> ws(std::max<std::size_t>(1, ws_bytes / sizeof(float)));

  kernels::DecodeAttentionParams p;
  p.q = dq.get();
  p.q_row_stride = q_stride;
  p.k_cache = dk.get();
  p.v_cache = dv.get();
  p.kv_request_stride = request_stride;
  p.kv_head_stride = head_stride;
  p.slots = dslots.get();
  p.lengths = dlengths.get();
  p.out = dout.get();
  p.out_row_stride = out_stride;
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  p.requests = requests;
  p.q_heads = c.q_heads;
  p.kv_heads = c.kv_heads;
  p.head_dim = c.head_dim;
  p.max_context = c.max_context;
  p.max_length = c.max_length;
  p.scale = scale;
  kernels::launch_decode_attention(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto out = dout.download();

  const std::int64_t width = c.q_heads * hd;
  for (int i = 0; i < requests; ++i) {
    std::vector<float> got_row(static_cast<std::size_t>(width)), want_row(want.begin() + i * width, want.begin() + (i + 1) * width);
    for (std::int64_t e = 0; e < width; ++e) got_row[e] = ref::bf16_to_float(out[i * out_stride + e]);
    for (std::int64_t e = width; e < out_stride; ++e) ASSERT_EQ(out[i * out_stride + e], kPad) << "pad of row " << i << " overwritten";
    const double nmse = testing::normalised_mse(got_row, want_row);
    EXPECT_LE(nmse, 1e-4) << "request " << i << " (length " << lengths[i] << ")";
    EXPECT_TRUE(std::isfinite(nmse)) << "request " << i;
  }
}

TEST(DecodeAttention, Gqa32x8HeadDim128LongAndShortContexts) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {1, 2, 255, 256, 257, 5000, 40000}, 40960}, 1);
}

TEST(DecodeAttention, Gqa32x8HeadDim128WithTightMaxLength) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {1, 2, 255, 256, 257, 5000, 40000}, 40960, 40000}, 2);
}

TEST(DecodeAttention, Mqa8x1HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({8, 1, 64, {1, 2, 255, 256, 257, 5000}, 8192}, 3);
}

TEST(DecodeAttention, Mha4x4HeadDim32) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({4, 4, 32, {1, 2, 255, 256, 257, 5000}, 8192}, 4);
}

// Group of 3 (SmolLM2-135M: 9 query / 3 KV heads) and a single request spread over many chunks.
TEST(DecodeAttention, Gqa9x3HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({9, 3, 64, {2048}, 2048}, 5);
  check_decode({9, 3, 64, {1, 1000, 2047}, 2048}, 6);
}

// Groups wider than one block's register budget (16 query heads on one KV head: two head batches).
TEST(DecodeAttention, Mqa16x1HeadDim128And32) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({16, 1, 128, {3, 700, 3000}, 4096}, 7);
  check_decode({16, 1, 32, {3, 700, 3000}, 4096}, 8);
}

TEST(DecodeAttention, GroupOf8HeadDim64And128) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({64, 8, 128, {129, 4097}, 8192}, 9);
  check_decode({16, 2, 64, {129, 4097}, 8192}, 10);
}

// So many requests that every request is one chunk: the split kernel writes the output itself.
TEST(DecodeAttention, ManyRequestsSingleChunk) {
  SPECONTEXT_REQUIRE_GPU();
  std::vector<int> lengths(1100);
  for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = 1 + static_cast<int>(rng::splitmix64(i) % 300);
  check_decode({4, 2, 32, lengths, 300}, 11);
}

// One request: a short context (few chunks; one of them partly filled) and a long one cut into
// hundreds of chunks, so the merge combines many partial results.
TEST(DecodeAttention, SingleRequestShortAndLongContexts) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({32, 8, 128, {2048}, 2048}, 13);
  check_decode({32, 8, 128, {1500}, 2048, 1500}, 14);
  check_decode({8, 2, 128, {32768}, 32768}, 15);
  check_decode({8, 2, 32, {30001}, 32768}, 16);
}

// A request with no valid keys gets zeros, next to normal ones.
TEST(DecodeAttention, ZeroLengthGivesZeros) {
  SPECONTEXT_REQUIRE_GPU();
  check_decode({8, 2, 64, {0, 300, 0}, 1024}, 12);
}

// ---- Sparse mode -------------------------------------------------------------------------------

// Query rows, cache and slots of one launch, laid out as in check_decode: the query rows sit in
// a fused QKV buffer, output rows are wider than the heads, requests use permuted cache rows, and
// the whole cache is NaN until fill_row writes the rows some request may read.
struct Problem {
  int q_heads, kv_heads, head_dim, max_context, requests;
  std::int64_t head_stride, request_stride, q_stride, out_stride;
  std::vector<std::int32_t> slots;
  std::vector<std::uint16_t> q, k, v;
};

Problem make_problem(int q_heads, int kv_heads, int head_dim, int max_context, int requests, float q_std,
                     std::uint64_t seed) {
  Problem pr{q_heads, kv_heads, head_dim, max_context, requests, 0, 0, 0, 0, {}, {}, {}, {}};
  const std::int64_t hd = head_dim;
  const int max_requests = requests + 2;
  pr.head_stride = max_context * hd;
  pr.request_stride = kv_heads * pr.head_stride;
  pr.q_stride = (q_heads + 2 * kv_heads) * hd;
  pr.out_stride = q_heads * hd + 8;
  pr.slots.resize(requests);
  for (int i = 0; i < requests; ++i) pr.slots[i] = (i * 5 + 1) % max_requests;
  if (std::gcd(5, max_requests) != 1) std::iota(pr.slots.begin(), pr.slots.end(), 1);
  pr.q.resize(static_cast<std::size_t>(requests * pr.q_stride));
  for (std::size_t i = 0; i < pr.q.size(); ++i) pr.q[i] = ref::float_to_bf16(q_std * rng::normal(seed, static_cast<std::int64_t>(i)));
  pr.k.assign(static_cast<std::size_t>(max_requests * pr.request_stride), kBf16NaN);
  pr.v = pr.k;
  return pr;
}

// Random K and V for cache row `row` of request i's KV head g.
void fill_row(Problem& pr, int i, int g, int row, std::uint64_t seed) {
  const std::int64_t at0 = pr.slots[i] * pr.request_stride + g * pr.head_stride + static_cast<std::int64_t>(row) * pr.head_dim;
  for (std::int64_t at = at0; at < at0 + pr.head_dim; ++at) {
    pr.k[at] = ref::float_to_bf16(rng::normal(seed + 1, at));
    pr.v[at] = ref::float_to_bf16(rng::normal(seed + 2, at));
  }
}

// The index lists and counts of a sparse launch in the kernel's layout. Strides are padded and
// the padding holds entries a kernel must not use (rows past a count, a huge count).
struct IndexLists {
  std::vector<std::int32_t> indices, counts;
  std::int64_t index_request_stride = 0, index_head_stride = 0, count_request_stride = 0, count_head_stride = 0;
};

// lists[i][g]: the rows of request i, KV head g (one list per request when shared, read by
// every KV head through zero head strides).
IndexLists pack_lists(const std::vector<std::vector<std::vector<std::int32_t>>>& lists, int kv_heads, bool shared,
                      int max_context) {
  IndexLists il;
  std::size_t cap = 0;
  for (const auto& r : lists)
    for (const auto& l : r) cap = std::max(cap, l.size());
  const int per_request = shared ? 1 : kv_heads;
  il.index_head_stride = shared ? 0 : static_cast<std::int64_t>(cap) + 3;
  il.index_request_stride = per_request * (static_cast<std::int64_t>(cap) + 3) + 5;
  il.count_head_stride = shared ? 0 : 1;
  il.count_request_stride = per_request + 1;
  const std::int64_t requests = static_cast<std::int64_t>(lists.size());
  // Padding: the last row (NaN unless listed) and garbage counts.
  il.indices.assign(static_cast<std::size_t>(requests * il.index_request_stride), max_context - 1);
  il.counts.assign(static_cast<std::size_t>(requests * il.count_request_stride), 1 << 30);
  for (std::int64_t i = 0; i < requests; ++i)
    for (int g = 0; g < per_request; ++g) {
      const auto& l = lists[i][g];
      std::copy(l.begin(), l.end(), il.indices.begin() + i * il.index_request_stride + g * (static_cast<std::int64_t>(cap) + 3));
      il.counts[i * il.count_request_stride + g] = static_cast<std::int32_t>(l.size());
    }
  return il;
}

ref::DecodeAttentionParams ref_params(const Problem& pr, const std::vector<std::int32_t>* lengths, const IndexLists* il) {
  ref::DecodeAttentionParams rp;
  rp.q = pr.q.data();
  rp.q_row_stride = pr.q_stride;
  rp.k_cache = pr.k.data();
  rp.v_cache = pr.v.data();
  rp.kv_request_stride = pr.request_stride;
  rp.kv_head_stride = pr.head_stride;
  rp.slots = pr.slots.data();
  rp.lengths = lengths ? lengths->data() : nullptr;
  rp.requests = pr.requests;
  rp.q_heads = pr.q_heads;
  rp.kv_heads = pr.kv_heads;
  rp.head_dim = pr.head_dim;
  rp.scale = 1.0f / std::sqrt(static_cast<float>(pr.head_dim));
  if (il) {
    rp.indices = il->indices.data();
    rp.index_request_stride = il->index_request_stride;
    rp.index_head_stride = il->index_head_stride;
    rp.index_counts = il->counts.data();
    rp.count_request_stride = il->count_request_stride;
    rp.count_head_stride = il->count_head_stride;
  }
  return rp;
}

// The launch of problem pr over its device buffers: q rows in the QKV buffer `q`, caches k and v,
// output rows `out`; the caller adds lengths (dense) or index lists (sparse).
kernels::DecodeAttentionParams launch_params(const Problem& pr, const std::uint16_t* q, const std::uint16_t* k, const std::uint16_t* v,
                                             const std::int32_t* slots, std::uint16_t* out, float* workspace,
                                             std::size_t workspace_bytes) {
  kernels::DecodeAttentionParams p;
  p.q = q;
  p.q_row_stride = pr.q_stride;
  p.k_cache = k;
  p.v_cache = v;
  p.kv_request_stride = pr.request_stride;
  p.kv_head_stride = pr.head_stride;
  p.slots = slots;
  p.out = out;
  p.out_row_stride = pr.out_stride;
  p.workspace = workspace;
  p.workspace_bytes = workspace_bytes;
  p.requests = pr.requests;
  p.q_heads = pr.q_heads;
  p.kv_heads = pr.kv_heads;
  p.head_dim = pr.head_dim;
  p.max_context = pr.max_context;
  p.scale = 1.0f / std::sqrt(static_cast<float>(pr.head_dim));
  return p;
}

// Runs the kernel in dense mode (lengths) or sparse mode (il; then no lengths at all) and returns
// the whole output buffer, pads included (they start as kPad).
constexpr std::uint16_t kPad = 0x1234;
std::vector<std::uint16_t> run_kernel(const Problem& pr, const std::vector<std::int32_t>* lengths, const IndexLists* il,
                                      int max_length) {
  DeviceBuffer<std::uint16_t> dq(pr.q), dk(pr.k), dv(pr.v);
  DeviceBuffer<std::int32_t> dslots(pr.slots);
  DeviceBuffer<std::int32_t> dlengths(lengths ? *lengths : std::vector<std::int32_t>(1));
  DeviceBuffer<std::int32_t> dindices(il ? il->indices : std::vector<std::int32_t>(1));
  DeviceBuffer<std::int32_t> dcounts(il ? il->counts : std::vector<std::int32_t>(1));
  DeviceBuffer<std::uint16_t> dout(std::vector<std::uint16_t>(static_cast<std::size_t>(pr.requests * pr.out_stride), kPad));
  const std::size_t ws_bytes = kernels::decode_attention_workspace_bytes(pr.requests, pr.q_heads, pr.head_dim, pr.max_context);
  DeviceBuffer<float> ws(std::max<std::size_t>(1, ws_bytes / sizeof(float)));

  kernels::DecodeAttentionParams p = launch_params(pr, dq.get(), dk.get(), dv.get(), dslots.get(), dout.get(), ws.get(), ws_bytes);
  p.lengths = lengths ? dlengths.get() : nullptr;
  p.max_length = max_length;
  if (il) {
    p.indices = dindices.get();
    p.index_request_stride = il->index_request_stride;
    p.index_head_stride = il->index_head_stride;
    p.index_counts = dcounts.get();
    p.count_request_stride = il->count_request_stride;
    p.count_head_stride = il->count_head_stride;
  }
  kernels::launch_decode_attention(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  return dout.download();
}

enum class Order { kAscending, kUnordered };

struct SparseCase {
  int q_heads, kv_heads, head_dim;
  std::vector<std::vector<int>> counts;  // [request][kv_head], or [request][0] with shared lists
  int max_context;
  bool shared = false;  // one list and one count per request, read by all its KV heads
  Order order = Order::kAscending;
  int max_length = 0;  // the launch's hint (0: none)
  float q_std = 1.5f;
};

// Sparse mode against the reference: every (request, KV head) lists `count` distinct random
// rows of its cache row (sorted or shuffled); every row not listed is NaN in K and V, so reading
// one poisons the output. Checked per query head: a head with no keys must be exactly zero.
void check_sparse(const SparseCase& c, std::uint64_t seed) {
  const int requests = static_cast<int>(c.counts.size());
  Problem pr = make_problem(c.q_heads, c.kv_heads, c.head_dim, c.max_context, requests, c.q_std, seed);
  std::mt19937_64 gen(seed);
  std::vector<std::int32_t> all(static_cast<std::size_t>(c.max_context));
  std::vector<std::vector<std::vector<std::int32_t>>> lists(requests);
  for (int i = 0; i < requests; ++i) {
    ASSERT_EQ(c.counts[i].size(), static_cast<std::size_t>(c.shared ? 1 : c.kv_heads)) << "request " << i;
    for (int count : c.counts[i]) {
      ASSERT_LE(count, c.max_context);
      std::iota(all.begin(), all.end(), 0);
      for (int j = 0; j < count; ++j)  // partial Fisher-Yates: count distinct rows in random order
        std::swap(all[j], all[std::uniform_int_distribution<int>(j, c.max_context - 1)(gen)]);
      std::vector<std::int32_t> l(all.begin(), all.begin() + count);
      if (c.order == Order::kAscending) std::sort(l.begin(), l.end());
      lists[i].push_back(std::move(l));
    }
    for (int g = 0; g < c.kv_heads; ++g)
      for (std::int32_t row : lists[i][c.shared ? 0 : g]) fill_row(pr, i, g, row, seed);
  }
  const IndexLists il = pack_lists(lists, c.kv_heads, c.shared, c.max_context);
  const auto want = ref::decode_attention(ref_params(pr, nullptr, &il));
  const auto out = run_kernel(pr, nullptr, &il, c.max_length);

  const std::int64_t hd = c.head_dim, width = c.q_heads * hd;
  const int group = c.q_heads / c.kv_heads;
  for (int i = 0; i < requests; ++i) {
    for (std::int64_t e = width; e < pr.out_stride; ++e)
      ASSERT_EQ(out[i * pr.out_stride + e], kPad) << "pad of row " << i << " overwritten";
    for (int h = 0; h < c.q_heads; ++h) {
      const int count = c.counts[i][c.shared ? 0 : h / group];
      std::vector<float> got(static_cast<std::size_t>(hd)), ref_head(want.begin() + i * width + h * hd, want.begin() + i * width + (h + 1) * hd);
      for (std::int64_t d = 0; d < hd; ++d) got[d] = ref::bf16_to_float(out[i * pr.out_stride + h * hd + d]);
      if (count == 0) {
        for (std::int64_t d = 0; d < hd; ++d) ASSERT_EQ(out[i * pr.out_stride + h * hd + d], 0) << "request " << i << " head " << h;
        continue;
      }
      const double nmse = testing::normalised_mse(got, ref_head);
      EXPECT_LE(nmse, 1e-4) << "request " << i << " head " << h << " (count " << count << ")";
      EXPECT_TRUE(std::isfinite(nmse)) << "request " << i << " head " << h << " (count " << count << ")";
    }
  }
}

// Per-head counts from 0 to a 40000-row list of a 40960-row cache; sorted and shuffled lists.
TEST(DecodeAttentionSparse, Gqa32x8HeadDim128PerHeadCounts) {
  SPECONTEXT_REQUIRE_GPU();
  const std::vector<std::vector<int>> counts = {{0, 1, 2, 255, 256, 257, 2049, 40000}, {40000, 17, 4000, 1, 0, 129, 40000, 3}};
  check_sparse({32, 8, 128, counts, 40960}, 21);
  check_sparse({32, 8, 128, counts, 40960, false, Order::kUnordered}, 22);
}

// The grid sized from a tight bound on the counts (the selection budget + 1), and a bound that
// is exactly the largest count.
TEST(DecodeAttentionSparse, Gqa32x8HeadDim128TightMaxLength) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({32, 8, 128, {{2049, 2049, 2048, 1, 0, 2049, 700, 2049}, {2049, 5, 2049, 2049, 2049, 2049, 2049, 2049}}, 40960,
                false, Order::kUnordered, 2049},
               23);
  check_sparse({32, 8, 128, {{40000, 1, 0, 30000, 2, 40000, 39999, 64}}, 40960, false, Order::kAscending, 40000}, 24);
}

// index_head_stride 0: every KV head of a request reads the request's list.
TEST(DecodeAttentionSparse, SharedListAcrossKvHeads) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({32, 8, 128, {{1}, {300}, {5000}, {0}}, 8192, true}, 25);
  check_sparse({32, 8, 128, {{1}, {300}, {5000}, {0}}, 8192, true, Order::kUnordered}, 26);
  check_sparse({8, 2, 64, {{4097}, {129}}, 8192, true, Order::kUnordered, 4097}, 27);
}

TEST(DecodeAttentionSparse, Mqa8x1HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({8, 1, 64, {{1}, {2}, {255}, {256}, {257}, {5000}}, 8192, false, Order::kUnordered}, 28);
}

TEST(DecodeAttentionSparse, Mha4x4HeadDim32) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({4, 4, 32, {{0, 1, 64, 3000}, {2047, 2048, 5, 7000}}, 8192}, 29);
  check_sparse({4, 4, 32, {{0, 1, 64, 3000}, {2047, 2048, 5, 7000}}, 8192, false, Order::kUnordered}, 30);
}

// Group of 3; a list of every row of the cache in shuffled order.
TEST(DecodeAttentionSparse, Gqa9x3HeadDim64) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({9, 3, 64, {{2048, 2048, 2048}}, 2048, false, Order::kUnordered}, 31);
  check_sparse({9, 3, 64, {{1, 1000, 2047}, {0, 5, 333}}, 2048}, 32);
}

// Groups of 8 (the kMaxGroup 8 kernels) and of 16 (two head batches).
TEST(DecodeAttentionSparse, GroupOf8HeadDim64And128) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse({64, 8, 128, {{129, 4097, 1, 0, 64, 65, 300, 2000}}, 8192, false, Order::kUnordered}, 33);
  check_sparse({16, 2, 64, {{129, 4097}, {4097, 0}}, 8192}, 34);
  check_sparse({16, 1, 32, {{3}, {700}, {3000}}, 4096, false, Order::kUnordered}, 35);
}

// So many requests that every request is one chunk: the split kernel writes the output itself.
TEST(DecodeAttentionSparse, ManyRequestsSingleChunk) {
  SPECONTEXT_REQUIRE_GPU();
  std::vector<std::vector<int>> counts(1100);
  for (std::size_t i = 0; i < counts.size(); ++i)
    counts[i] = {static_cast<int>(rng::splitmix64(2 * i) % 301), static_cast<int>(rng::splitmix64(2 * i + 1) % 301)};
  check_sparse({4, 2, 32, counts, 300, false, Order::kUnordered}, 36);
}

// Sparse mode listing rows 0 .. lengths[i] - 1 (per head, or one shared list) does exactly what
// dense mode does: same tiles, chunks and arithmetic, only the addresses come from the list.
void check_sparse_matches_dense(int q_heads, int kv_heads, int head_dim, const std::vector<int>& lengths, int max_context,
                                int max_length, std::uint64_t seed) {
  const int requests = static_cast<int>(lengths.size());
  Problem pr = make_problem(q_heads, kv_heads, head_dim, max_context, requests, 1.5f, seed);
  std::vector<std::vector<std::vector<std::int32_t>>> per_head(requests), shared(requests);
  for (int i = 0; i < requests; ++i) {
    std::vector<std::int32_t> l(static_cast<std::size_t>(lengths[i]));
    std::iota(l.begin(), l.end(), 0);
    for (int g = 0; g < kv_heads; ++g) {
      for (std::int32_t row : l) fill_row(pr, i, g, row, seed);
      per_head[i].push_back(l);
    }
    shared[i].push_back(l);
  }
  const std::vector<std::int32_t> lens(lengths.begin(), lengths.end());
  const auto dense = run_kernel(pr, &lens, nullptr, max_length);
  const IndexLists il_heads = pack_lists(per_head, kv_heads, false, max_context);
  const IndexLists il_shared = pack_lists(shared, kv_heads, true, max_context);
  const auto sparse_heads = run_kernel(pr, nullptr, &il_heads, max_length);
  const auto sparse_shared = run_kernel(pr, nullptr, &il_shared, max_length);
  ASSERT_EQ(dense.size(), sparse_heads.size());
  for (std::size_t e = 0; e < dense.size(); ++e) {
    ASSERT_EQ(sparse_heads[e], dense[e]) << "per-head lists, element " << e << " of row " << e / pr.out_stride;
    ASSERT_EQ(sparse_shared[e], dense[e]) << "shared list, element " << e << " of row " << e / pr.out_stride;
  }
  // And dense mode is right to begin with (a NaN everywhere would also match).
  const auto want = ref::decode_attention(ref_params(pr, &lens, nullptr));
  const std::int64_t width = static_cast<std::int64_t>(q_heads) * head_dim;
  for (int i = 0; i < requests; ++i) {
    std::vector<float> got(static_cast<std::size_t>(width)), want_row(want.begin() + i * width, want.begin() + (i + 1) * width);
    for (std::int64_t e = 0; e < width; ++e) got[e] = ref::bf16_to_float(dense[i * pr.out_stride + e]);
    EXPECT_LE(testing::normalised_mse(got, want_row), 1e-4) << "request " << i;
  }
}

TEST(DecodeAttentionSparse, IdentityListsMatchDenseBitForBit) {
  SPECONTEXT_REQUIRE_GPU();
  check_sparse_matches_dense(32, 8, 128, {1, 2, 255, 256, 257, 5000, 0}, 8192, 0, 41);
  check_sparse_matches_dense(8, 2, 128, {32768}, 32768, 0, 42);
  check_sparse_matches_dense(64, 8, 128, {129, 4097}, 8192, 4097, 43);
  check_sparse_matches_dense(9, 3, 64, {1, 1000, 2047}, 2048, 0, 44);
  check_sparse_matches_dense(8, 1, 64, {300, 7}, 1024, 300, 45);
  std::vector<int> many(1100);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int>(rng::splitmix64(i) % 301);
  check_sparse_matches_dense(4, 2, 32, many, 300, 0, 46);
}

// history_ready: the split kernel reads slots, lengths and its first tiles of older keys before it
// waits for the kernel before it. Here that kernel is the decode step's RoPE + KV append, which
// rotates q in place and writes each request's newest key into a cache row that starts as NaN, so a
// split that read q or the newest key before its wait would differ. Launched on one stream as in a
// decode step, several times over (a read that races the append need not lose every time), each
// result must equal the launch without history_ready bit for bit, and that one the reference on
// the buffers as the append left them.
TEST(DecodeAttention, HistoryReadyWaitsForTheAppendedKey) {
  SPECONTEXT_REQUIRE_GPU();
  const int q_heads = 32, kv_heads = 8, head_dim = 128, max_context = 8192;
  const std::vector<std::int32_t> lengths = {2048, 1, 17, 129, 4097, max_context};
  const int requests = static_cast<int>(lengths.size());
  Problem pr = make_problem(q_heads, kv_heads, head_dim, max_context, requests, 1.5f, 51);
  for (int i = 0; i < requests; ++i)
    for (int g = 0; g < kv_heads; ++g)
      for (int row = 0; row + 1 < lengths[i]; ++row) fill_row(pr, i, g, row, 51);
  std::vector<std::int32_t> positions(lengths.size());
  for (std::size_t i = 0; i < lengths.size(); ++i) positions[i] = lengths[i] - 1;
  std::vector<float> inv_freq(head_dim / 2);
  for (std::size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(500000.0f, -2.0f * static_cast<float>(i) / head_dim);

  cudaStream_t stream = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const std::size_t ws_bytes = kernels::decode_attention_workspace_bytes(requests, q_heads, head_dim, max_context);
  // One append + attention from fresh buffers; after == true also returns the buffers as left.
  auto run = [&](bool history_ready, Problem* after) {
    DeviceBuffer<std::uint16_t> dq(pr.q), dk(pr.k), dv(pr.v);
    DeviceBuffer<std::int32_t> dslots(pr.slots), dlengths(lengths), dpositions(positions);
    DeviceBuffer<float> dfreq(inv_freq), ws(std::max<std::size_t>(1, ws_bytes / sizeof(float)));
    DeviceBuffer<std::uint16_t> dout(std::vector<std::uint16_t>(static_cast<std::size_t>(requests * pr.out_stride), kPad));
    kernels::RopeKvAppendParams r{dq.get(), dk.get(), dv.get(), dfreq.get(), dpositions.get(), dslots.get(), requests, pr.q_stride,
                                  q_heads, kv_heads, head_dim, pr.request_stride, pr.head_stride, 1.0f};
    kernels::DecodeAttentionParams p = launch_params(pr, dq.get(), dk.get(), dv.get(), dslots.get(), dout.get(), ws.get(), ws_bytes);
    p.lengths = dlengths.get();
    p.history_ready = history_ready;
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
    kernels::launch_rope_kv_append(r, stream);
    kernels::launch_decode_attention(p, stream);
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (after) {
      *after = pr;
      after->q = dq.download();
      after->k = dk.download();
      after->v = dv.download();
    }
    return dout.download();
  };
  Problem appended = pr;
  const auto waited = run(false, &appended);
  for (int repeat = 0; repeat < 4; ++repeat) {
    const auto early = run(true, nullptr);
    ASSERT_EQ(early.size(), waited.size());
    for (std::size_t e = 0; e < waited.size(); ++e)
      ASSERT_EQ(early[e], waited[e]) << "repeat " << repeat << ", element " << e % pr.out_stride << " of row " << e / pr.out_stride;
  }
  SPECONTEXT_CUDA_CHECK(cudaStreamDestroy(stream));
  const auto want = ref::decode_attention(ref_params(appended, &lengths, nullptr));
  const std::int64_t width = static_cast<std::int64_t>(q_heads) * head_dim;
  for (int i = 0; i < requests; ++i) {
    std::vector<float> got(static_cast<std::size_t>(width)), want_row(want.begin() + i * width, want.begin() + (i + 1) * width);
    for (std::int64_t e = 0; e < width; ++e) got[e] = ref::bf16_to_float(waited[i * pr.out_stride + e]);
    EXPECT_LE(testing::normalised_mse(got, want_row), 1e-4) << "request " << i << " (length " << lengths[i] << ")";
  }
}

// Sparse-mode validation throws before touching the device, so this runs without a GPU.
TEST(DecodeAttentionSparse, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  static std::int32_t ints[4];
  kernels::DecodeAttentionParams p;
  p.q = p.k_cache = p.v_cache = fake;
  p.out = fake;
  p.slots = ints;
  p.lengths = nullptr;  // unused in sparse mode
  p.requests = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 128;
  p.max_context = 1024;
  p.q_row_stride = p.out_row_stride = 12 * 128;
  p.kv_head_stride = 1024 * 128;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.scale = 0.1f;
  p.indices = ints;
  p.index_counts = nullptr;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "indices without index_counts accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("index_counts"), std::string::npos) << e.what();
  }
  p.indices = nullptr;
  p.index_counts = ints;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "index_counts without indices accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("indices"), std::string::npos) << e.what();
  }
  p.indices = ints;
  p.index_head_stride = -1;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
  p.index_head_stride = 0;
  p.index_request_stride = -4;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
  p.index_request_stride = 4;
  p.count_head_stride = -1;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
  p.count_head_stride = 0;
  p.count_request_stride = -1;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
  p.count_request_stride = 1;
  p.history_ready = true;  // sparse lists come from the kernels before: no early reads
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "history_ready accepted in sparse mode";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("history_ready"), std::string::npos) << e.what();
  }
  p.history_ready = false;
  // Everything sparse is valid and lengths is null: the next check to fail is the workspace's.
  p.workspace = nullptr;
  p.workspace_bytes = 0;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "missing workspace accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
  }
  // Dense mode still needs lengths.
  p.indices = nullptr;
  p.index_counts = nullptr;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(DecodeAttention, RejectsBadParameters) {
  alignas(16) static std::uint16_t fake[64];
  static std::int32_t ints[4];
  kernels::DecodeAttentionParams p;
  p.q = p.k_cache = p.v_cache = fake;
  p.out = fake;
  p.slots = p.lengths = ints;
  p.requests = 2;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 96;
  p.max_context = 1024;
  p.q_row_stride = p.out_row_stride = 12 * 96;
  p.kv_head_stride = 1024 * 96;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.scale = 0.1f;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "head_dim 96 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim 96"), std::string::npos) << e.what();
  }
  p.head_dim = 128;
  p.q_row_stride = p.out_row_stride = 12 * 128;
  p.kv_head_stride = 1024 * 128;
  p.kv_request_stride = 2 * p.kv_head_stride;
  p.kv_heads = 3;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);  // 8 % 3 != 0
  p.kv_heads = 2;
  p.workspace = nullptr;
  p.workspace_bytes = 0;
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);  // needs a workspace
  p.workspace = reinterpret_cast<float*>(fake);
  p.workspace_bytes = 16;
  try {
    kernels::launch_decode_attention(p, nullptr);
    FAIL() << "tiny workspace accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
  }
  p.workspace_bytes = kernels::decode_attention_workspace_bytes(2, 8, 128, 1024);
  p.kv_head_stride = 1000 * 128;  // shorter than max_context rows
  EXPECT_THROW(kernels::launch_decode_attention(p, nullptr), std::invalid_argument);
}

TEST(DecodeAttention, WorkspaceIsBounded) {
  // At most ~1024 + requests chunk rows per query head, whatever the context.
  const std::size_t row = 32 * (128 + 2) * sizeof(float);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(1, 32, 128, 1 << 20), 1024 * row);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(32, 32, 128, 1 << 20), (1024 + 32) * row);
  EXPECT_LE(kernels::decode_attention_workspace_bytes(5000, 32, 128, 1 << 20), 5000 * row);
  EXPECT_EQ(kernels::decode_attention_workspace_bytes(0, 32, 128, 1024), 0u);
}

}  // namespace

// Two keys, worked by hand: q = (1, 0), k0 = (1, 0), k1 = (0, 1), scale 1: scores 1 and 0,
// weights e / (e + 1) and 1 / (e + 1); v0 = (2, 0), v1 = (0, 4). Both query heads share the one
// KV head; the second request (length 1, another slot) sees only its own first key.
TEST(DecodeAttentionReference, TwoKeysByHand) {
  using ref::float_to_bf16;
  const int hd = 2, max_context = 4;
  // Cache: 2 slots x 1 KV head x 4 keys x 2 dims; slot 1 is request 0's, slot 0 request 1's.
  std::vector<std::uint16_t> k(2 * max_context * hd, float_to_bf16(std::numeric_limits<float>::quiet_NaN()));
  std::vector<std::uint16_t> v = k;
  auto put = [&](std::vector<std::uint16_t>& t, int slot, int key, float a, float b) {
    t[(slot * max_context + key) * hd] = float_to_bf16(a);
    t[(slot * max_context + key) * hd + 1] = float_to_bf16(b);
  };
  put(k, 1, 0, 1, 0), put(k, 1, 1, 0, 1), put(v, 1, 0, 2, 0), put(v, 1, 1, 0, 4);
  put(k, 0, 0, 3, 3), put(v, 0, 0, -1.5f, 0.25f);
  // Query rows: 2 heads x 2 dims; head 1 of request 0 is (0, 2): scores 0 and 2.
  std::vector<std::uint16_t> q = {float_to_bf16(1), 0, 0, float_to_bf16(2), float_to_bf16(5), 0, 0, float_to_bf16(-7)};
  std::vector<std::int32_t> slots = {1, 0}, lengths = {2, 1};
  ref::DecodeAttentionParams p;
  p.q = q.data();
  p.q_row_stride = 4;
  p.k_cache = k.data();
  p.v_cache = v.data();
  p.kv_request_stride = max_context * hd;
  p.kv_head_stride = max_context * hd;
  p.slots = slots.data();
  p.lengths = lengths.data();
  p.requests = 2;
  p.q_heads = 2;
  p.kv_heads = 1;
  p.head_dim = hd;
  p.scale = 1.0f;
  const auto out = ref::decode_attention(p);
  ASSERT_EQ(out.size(), 8u);
  const double e = std::exp(1.0), e2 = std::exp(2.0);
  EXPECT_NEAR(out[0], 2 * e / (e + 1), 1e-6);
  EXPECT_NEAR(out[1], 4 / (e + 1), 1e-6);
  EXPECT_NEAR(out[2], 2 * 1 / (1 + e2), 1e-6);
  EXPECT_NEAR(out[3], 4 * e2 / (1 + e2), 1e-6);
  EXPECT_FLOAT_EQ(out[4], -1.5f);  // one key: its value, whatever the score
  EXPECT_FLOAT_EQ(out[5], 0.25f);
  EXPECT_FLOAT_EQ(out[6], -1.5f);
  EXPECT_FLOAT_EQ(out[7], 0.25f);

  // Scaling changes the weights as scale * score: scale 0 would be uniform; scale 2 doubles.
  p.scale = 2.0f;
  const auto out2 = ref::decode_attention(p);
  EXPECT_NEAR(out2[0], 2 * e2 / (e2 + 1), 1e-6);
  EXPECT_NEAR(out2[1], 4 / (e2 + 1), 1e-6);
}

// Sparse mode gathers the listed rows (in list order) of each (request, KV head) and attends
// them as a contiguous cache would; per-head lists, a shared list, and a count of 0.
TEST(DecodeAttentionReference, SparseGathersListedRows) {
  const int hd = 8, max_context = 16, kv_heads = 2, q_heads = 4, requests = 2;
  const std::int64_t head_stride = max_context * hd, request_stride = kv_heads * head_stride;
  std::vector<std::uint16_t> k(static_cast<std::size_t>(3 * request_stride)), v(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) {
    k[i] = ref::float_to_bf16(rng::normal(5, static_cast<std::int64_t>(i)));
    v[i] = ref::float_to_bf16(rng::normal(6, static_cast<std::int64_t>(i)));
  }
  std::vector<std::uint16_t> q(static_cast<std::size_t>(requests * q_heads * hd));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = ref::float_to_bf16(rng::normal(7, static_cast<std::int64_t>(i)));
  std::vector<std::int32_t> slots = {2, 0};
  // Lists: request 0 head 0 {3, 0, 15}, head 1 {7}; request 1 head 0 {} (count 0), head 1 {1, 2, 9, 4}.
  const std::int64_t cap = 6;
  std::vector<std::int32_t> indices(static_cast<std::size_t>(requests * kv_heads * cap), -1);
  const std::vector<std::vector<std::int32_t>> lists = {{3, 0, 15}, {7}, {}, {1, 2, 9, 4}};
  std::vector<std::int32_t> counts;
  for (std::size_t l = 0; l < lists.size(); ++l) {
    std::copy(lists[l].begin(), lists[l].end(), indices.begin() + static_cast<std::int64_t>(l) * cap);
    counts.push_back(static_cast<std::int32_t>(lists[l].size()));
  }
  ref::DecodeAttentionParams p;
  p.q = q.data();
  p.q_row_stride = q_heads * hd;
  p.k_cache = k.data();
  p.v_cache = v.data();
  p.kv_request_stride = request_stride;
  p.kv_head_stride = head_stride;
  p.slots = slots.data();
  p.requests = requests;
  p.q_heads = q_heads;
  p.kv_heads = kv_heads;
  p.head_dim = hd;
  p.scale = 0.3f;
  p.indices = indices.data();
  p.index_request_stride = kv_heads * cap;
  p.index_head_stride = cap;
  p.index_counts = counts.data();
  p.count_request_stride = kv_heads;
  p.count_head_stride = 1;
  auto expect_head = [&](const std::vector<float>& out, int i, int h, const std::vector<std::int32_t>& rows) {
    const int g = h / (q_heads / kv_heads);
    std::vector<std::uint16_t> kr, vr;
    for (std::int32_t row : rows)
      for (int d = 0; d < hd; ++d) {
        kr.push_back(k[slots[i] * request_stride + g * head_stride + row * hd + d]);
        vr.push_back(v[slots[i] * request_stride + g * head_stride + row * hd + d]);
      }
    std::vector<float> want(hd);
    ref::attend_one(q.data() + (i * q_heads + h) * hd, kr.data(), vr.data(), static_cast<int>(rows.size()), hd, p.scale,
                    want.data());
    for (int d = 0; d < hd; ++d) EXPECT_EQ(out[(i * q_heads + h) * hd + d], want[d]) << "request " << i << " head " << h;
  };
  const auto out = ref::decode_attention(p);
  for (int h = 0; h < q_heads; ++h) {
    expect_head(out, 0, h, lists[h / 2]);
    expect_head(out, 1, h, lists[2 + h / 2]);
  }
  for (int d = 0; d < 2 * hd; ++d) EXPECT_EQ(out[q_heads * hd + d], 0.0f);  // request 1, heads 0 and 1: no keys
  // One list per request (zero head strides): request 0 reads {3, 0, 15} for both KV heads.
  p.index_head_stride = p.count_head_stride = 0;
  const auto shared = ref::decode_attention(p);
  for (int h = 0; h < q_heads; ++h) expect_head(shared, 0, h, lists[0]);
  for (int h = 0; h < q_heads; ++h) expect_head(shared, 1, h, lists[2]);
  // Sparse with lists 0 .. n - 1 is the dense result.
  std::vector<std::int32_t> iota_list(max_context), lengths = {11, 16};
  std::iota(iota_list.begin(), iota_list.end(), 0);
  p.indices = iota_list.data();
  p.index_request_stride = p.index_head_stride = 0;
  p.index_counts = lengths.data();
  p.count_request_stride = 1;
  const auto sparse = ref::decode_attention(p);
  p.indices = nullptr;
  p.index_counts = nullptr;
  p.lengths = lengths.data();
  EXPECT_EQ(sparse, ref::decode_attention(p));
}

// A zero query weighs every key equally: the output is the mean of the values, whatever the keys.
TEST(DecodeAttentionReference, ZeroQueryAveragesValues) {
  const int hd = 32, len = 257;
  std::vector<std::uint16_t> q(hd, 0), k(len * hd), v(len * hd);
  for (int i = 0; i < len * hd; ++i) {
    k[i] = ref::float_to_bf16(rng::normal(3, i));
    v[i] = ref::float_to_bf16(rng::normal(4, i));
  }
  std::vector<float> out(hd);
  ref::attend_one(q.data(), k.data(), v.data(), len, hd, 0.125f, out.data());
  for (int d = 0; d < hd; ++d) {
    double mean = 0;
    for (int j = 0; j < len; ++j) mean += ref::bf16_to_float(v[j * hd + d]);
    EXPECT_NEAR(out[d], mean / len, 1e-6) << "dim " << d;
  }
}

// Large scores must not overflow: the reference subtracts the max before exponentiating.
TEST(DecodeAttentionReference, HugeScoresStayFinite) {
  const int hd = 2;
  std::vector<std::uint16_t> q = {ref::float_to_bf16(1000), 0};
  std::vector<std::uint16_t> k = {ref::float_to_bf16(1000), 0, ref::float_to_bf16(992), 0};
  std::vector<std::uint16_t> v = {ref::float_to_bf16(1), 0, 0, ref::float_to_bf16(1)};
  std::vector<float> out(hd);
  ref::attend_one(q.data(), k.data(), v.data(), 2, hd, 1.0f, out.data());
  // Scores 1e6 and 992000 (999 is not a bf16): the second weight is e^-8000, i.e. 0.
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 0.0f);
}

}  // namespace specontext
