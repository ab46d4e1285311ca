// kernels/top_b_select against its CPU reference, position for position (counts, indices, and the
// untouched tail of every index row): random scores over many budgets, exact ties, +inf, short
// rows, ensure_last, several rows per request, length_offset, signed zeros, NaN, rows of 256K
// positions, and replay inside a CUDA graph; the reference itself against hand examples and
// against the engine's select_top_b.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/token_selection.hpp"
#include "kernels/random_hash.hpp"
#include "kernels/reference/top_b_select.hpp"
#include "kernels/top_b_select.cuh"
#include "tests/cuda/gpu_test.hpp"

namespace specontext {
namespace {

using testing::DeviceBuffer;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr std::int32_t kUnwritten = -7;

struct TopBCase {
  int rows_per_request = 1;
  std::vector<std::int32_t> lengths;  // one per request
  int max_positions = 0;
  int budget = 1;
  bool ensure_last = false;
  int length_offset = 0;
};

int case_rows(const TopBCase& c) { return static_cast<int>(c.lengths.size()) * c.rows_per_request; }
std::int64_t case_stride(const TopBCase& c) { return c.max_positions + 5; }  // a ragged pad after every row

// Scores [rows, case_stride(c)] from gen(row, position).
template <class Gen>
std::vector<float> make_scores(const TopBCase& c, Gen&& gen) {
  const std::int64_t stride = case_stride(c);
  std::vector<float> s(static_cast<std::size_t>(case_rows(c) * stride));
  for (int r = 0; r < case_rows(c); ++r)
    for (std::int64_t j = 0; j < stride; ++j) s[r * stride + j] = gen(r, static_cast<int>(j));
  return s;
}

// Runs the kernel on `scores` (positions past each row's valid count are first set to +inf, so
// reading one would change the selection) and compares every row with the reference. The index
// rows are wider than the largest count and prefilled; entries past counts[r] must stay so.
void check_top_b(const TopBCase& c, std::vector<float> scores, const std::string& what) {
  const int rows = case_rows(c);
  const std::int64_t stride = case_stride(c);
  ASSERT_EQ(scores.size(), static_cast<std::size_t>(rows * stride));
  for (int r = 0; r < rows; ++r) {
    const int n = ref::top_b_valid_count(c.lengths[r / c.rows_per_request], c.length_offset, c.max_positions);
    std::fill(scores.begin() + r * stride + n, scores.begin() + (r + 1) * stride, kInf);
  }

  ref::TopBSelectParams rp;
  rp.scores = scores.data();
  rp.score_stride = stride;
  rp.lengths = c.lengths.data();
  rp.length_offset = c.length_offset;
  rp.rows = rows;
  rp.rows_per_request = c.rows_per_request;
  rp.max_positions = c.max_positions;
  rp.budget = c.budget;
  rp.ensure_last = c.ensure_last;
  const auto want = ref::top_b_select(rp);

  const std::int64_t index_stride = c.budget + (c.ensure_last ? 1 : 0) + 3;
  DeviceBuffer<float> dscores(scores);
  DeviceBuffer<std::int32_t> dlengths(c.lengths);
  DeviceBuffer<std::int32_t> dindices(std::vector<std::int32_t>(static_cast<std::size_t>(rows * index_stride), kUnwritten));
  DeviceBuffer<std::int32_t> dcounts(std::vector<std::int32_t>(static_cast<std::size_t>(rows), kUnwritten));
  kernels::TopBSelectParams p;
  p.scores = dscores.get();
  p.score_stride = stride;
  p.lengths = dlengths.get();
  p.length_offset = c.length_offset;
  p.rows = rows;
  p.rows_per_request = c.rows_per_request;
  p.max_positions = c.max_positions;
  p.budget = c.budget;
  p.ensure_last = c.ensure_last;
  p.indices = dindices.get();
  p.index_stride = index_stride;
  p.counts = dcounts.get();
  kernels::launch_top_b_select(p, nullptr);
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  const auto indices = dindices.download();
  const auto counts = dcounts.download();

  int bad_rows = 0;
  for (int r = 0; r < rows && bad_rows < 3; ++r) {
    const auto& w = want[r];
    const std::int32_t* got = indices.data() + r * index_stride;
    const std::int64_t count = counts[r];
    bool ok = count == static_cast<std::int64_t>(w.size());
    if (ok) ok = std::equal(w.begin(), w.end(), got);
    if (ok) ok = std::all_of(got + count, got + index_stride, [](std::int32_t x) { return x == kUnwritten; });
    if (!ok) {
      ++bad_rows;
      std::size_t first = 0;
      while (first < w.size() && static_cast<std::int64_t>(first) < count && got[first] == w[first]) ++first;
      ADD_FAILURE() << what << ": row " << r << " (n " << ref::top_b_valid_count(c.lengths[r / c.rows_per_request], c.length_offset, c.max_positions)
                    << ", budget " << c.budget << ", ensure_last " << c.ensure_last << "): count " << count << " want " << w.size()
                    << "; first difference at entry " << first << " (got "
                    << (static_cast<std::int64_t>(first) < index_stride ? got[first] : -1) << ", want "
                    << (first < w.size() ? w[first] : -1) << ")";
    }
  }
}

std::vector<std::int32_t> random_lengths(std::size_t requests, int max_length, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, max_length);
  std::vector<std::int32_t> v(requests);
  for (auto& x : v) x = d(gen);
  return v;
}

// A hashed pseudo-random score for every (row, position), seeded: both signs, magnitudes over
// 2^-8 .. 2^8 (many exponents, so every radix digit varies), rarely equal. Cheap: the large
// cases draw ~10^7 of them.
auto random_scores(std::uint64_t seed) {
  return [seed](int r, int j) {
    const std::uint64_t h = rng::splitmix64(seed ^ rng::splitmix64((static_cast<std::uint64_t>(r) << 32) | static_cast<std::uint32_t>(j)));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f) - 0.5f;  // 24 bits in [-0.5, 0.5)
    return std::ldexp(u, static_cast<int>(h & 15) - 7);
  };
}

// 32 requests x 8 KV heads, contexts up to 40000 (past the kernel's shared-memory key cache, so
// both the cached and the re-reading paths run), with some edge lengths mixed in.
TEST(TopBSelect, RandomScoresManyBudgets) {
  SPECONTEXT_REQUIRE_GPU();
  for (int budget : {1, 7, 256, 2048, 8192}) {
    TopBCase c;
    c.rows_per_request = 8;
    c.lengths = random_lengths(32, 40000, static_cast<std::uint32_t>(budget));
    c.lengths[0] = 40000;
    c.lengths[1] = budget;
    c.lengths[2] = budget + 1;
    c.lengths[3] = 0;
    c.lengths[4] = 24576;  // the largest row kept in shared memory
    c.lengths[5] = 24577;
    c.max_positions = 40000;
    c.budget = budget;
    const std::vector<float> scores = make_scores(c, random_scores(100 + budget));
    for (bool ensure_last : {false, true}) {
      c.ensure_last = ensure_last;
      check_top_b(c, scores, "random, budget " + std::to_string(budget) + (ensure_last ? ", ensure_last" : ""));
    }
  }
}

// Contexts of 256K: the longest rows the engine sizes for. One request's scores are all in
// [1, 1.25), so the first radix digit is the same everywhere and its bin (every position) is too
// large for the shared-memory cache: the third pass reads global memory again.
TEST(TopBSelect, LongRows) {
  SPECONTEXT_REQUIRE_GPU();
  for (int budget : {2048, 8192}) {
    TopBCase c;
    c.rows_per_request = 2;
    c.lengths = {262144, 262143, 200001, 100000};
    c.max_positions = 262144;
    c.budget = budget;
    c.ensure_last = true;
    std::mt19937 gen(budget);
    std::uniform_real_distribution<float> narrow(1.0f, 1.25f);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    check_top_b(c, make_scores(c, [&](int r, int) { return r / 2 == 3 ? narrow(gen) : normal(gen); }), "long rows");
  }
}

// Scores quantised to a few values, so the tie rule (lower position first) decides most of the
// selection; rows of one value only; and powers of two repeated so that a whole first-digit bin
// is exactly the quota (the select stops after one pass).
TEST(TopBSelect, ManyExactTies) {
  SPECONTEXT_REQUIRE_GPU();
  const float levels[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
  for (int budget : {1, 7, 256, 2048, 8192}) {
    TopBCase c;
    c.rows_per_request = 4;
    c.lengths = random_lengths(16, 30000, 7 + static_cast<std::uint32_t>(budget));
    c.lengths[0] = 30000;
    c.lengths[1] = 5000;
    c.max_positions = 30000;
    c.budget = budget;
    c.ensure_last = budget != 7;
    std::mt19937 gen(budget);
    std::discrete_distribution<int> pick({50, 30, 15, 5});
    check_top_b(c, make_scores(c, [&](int r, int) { return r % 4 == 3 ? 0.25f : levels[pick(gen)]; }),
                "four levels, budget " + std::to_string(budget));
  }
  for (int budget : {100, 250, 300, 1000}) {
    TopBCase c;
    c.lengths = {1000, 999, 30000};
    c.max_positions = 30000;
    c.budget = budget;
    // Position j scores 2^(j % 10): ten bins of (nearly) equal size, the highest last in each run.
    check_top_b(c, make_scores(c, [](int r, int j) { return std::ldexp(r == 2 ? 1.5f : 1.0f, j % 10); }),
                "powers of two, budget " + std::to_string(budget));
  }
}

// +inf forces positions in: a few per row, and in one row more +inf than the budget (then the
// lowest +inf positions win).
TEST(TopBSelect, InfinityIsPinned) {
  SPECONTEXT_REQUIRE_GPU();
  for (bool ensure_last : {false, true}) {
    TopBCase c;
    c.rows_per_request = 2;
    c.lengths = {5000, 30000, 300};
    c.max_positions = 30000;
    c.budget = 64;
    c.ensure_last = ensure_last;
    auto random = random_scores(5);
    check_top_b(c,
                make_scores(c,
                            [&](int r, int j) {
                              if (r == 4 && j % 3 == 0) return kInf;  // 100 of them
                              if (j == 17 || j == 4000 || j == 29000 || j % 1013 == 5) return kInf;
                              return random(r, j);
                            }),
                "+inf");
  }
}

// Rows shorter than, equal to, and one longer than the budget, empty rows, lengths past
// max_positions (clamped), several rows per request, and length_offset -1.
TEST(TopBSelect, ShortRowsOffsetsAndRequests) {
  SPECONTEXT_REQUIRE_GPU();
  for (int offset : {0, -1}) {
    for (bool ensure_last : {false, true}) {
      TopBCase c;
      c.rows_per_request = 3;
      c.lengths = {0, 1, 2, 99, 100, 101, 102, 5000, 9999, -5};
      c.max_positions = 5000;
      c.budget = 100;
      c.ensure_last = ensure_last;
      c.length_offset = offset;
      check_top_b(c, make_scores(c, random_scores(6)), "short rows, offset " + std::to_string(offset));
    }
  }
  TopBCase wide;  // a budget larger than every row
  wide.lengths = {1, 700, 1500};
  wide.max_positions = 1500;
  wide.budget = 8192;
  wide.ensure_last = true;
  check_top_b(wide, make_scores(wide, random_scores(7)), "budget above every length");
}

// Negative scores, -inf, subnormals and signed zeros: -0.0 == +0.0 in the CPU selection, so they
// tie and the lower position wins whichever sign it has.
TEST(TopBSelect, NegativeScoresAndSignedZeros) {
  SPECONTEXT_REQUIRE_GPU();
  const float values[7] = {-0.0f, 0.0f, -1e-40f, -3.0f, -kInf, -1e-30f, 1e-45f};
  for (int budget : {1, 7, 256, 2048}) {
    TopBCase c;
    c.rows_per_request = 2;
    c.lengths = {30000, 4000, 100};
    c.max_positions = 30000;
    c.budget = budget;
    c.ensure_last = budget == 7;
    std::mt19937 gen(budget);
    std::uniform_int_distribution<int> pick(0, 6);
    std::normal_distribution<float> normal(-5.0f, 2.0f);
    check_top_b(c,
                make_scores(c,
                            [&](int r, int j) {
                              if (r == 0) return j % 2 == 0 ? -0.0f : 0.0f;  // all zeros: the first `budget` positions
                              if (r == 1) return values[pick(gen)];
                              return -std::fabs(normal(gen));
                            }),
                "signed zeros, budget " + std::to_string(budget));
  }
}

// NaN ranks below everything (-inf included) and NaNs tie: rows where they are never needed, and
// rows with fewer numbers than the budget, where the lowest NaN positions fill it.
TEST(TopBSelect, NaNRanksLowest) {
  SPECONTEXT_REQUIRE_GPU();
  for (bool ensure_last : {false, true}) {
    TopBCase c;
    c.rows_per_request = 4;
    c.lengths = {30000, 3000};
    c.max_positions = 30000;
    c.budget = 512;
    c.ensure_last = ensure_last;
    auto random = random_scores(8);
    check_top_b(c,
                make_scores(c,
                            [&](int r, int j) {
                              const float x = random(r, j);
                              switch (r % 4) {
                                case 0: return j % 3 == 0 ? kNaN : x;  // plenty of numbers
                                case 1: return j % 50 == 0 ? x : kNaN;  // 600 / 60 numbers: NaNs chosen
                                case 2: return j % 50 == 0 ? -kInf : kNaN;  // -inf still above NaN
                                default: return j % 7 == 0 ? -kNaN : x;  // negative NaN too
                              }
                            }),
                std::string("NaN, ensure_last ") + (ensure_last ? "on" : "off"));
  }
}

// The launch inside a captured graph: replays with new lengths (device memory the graph reads)
// give each step's selection.
TEST(TopBSelect, ReplaysInACudaGraph) {
  SPECONTEXT_REQUIRE_GPU();
  TopBCase c;
  c.rows_per_request = 8;
  c.lengths = {3000, 20000};
  c.max_positions = 40000;
  c.budget = 256;
  c.ensure_last = true;
  const int rows = case_rows(c);
  const std::int64_t stride = case_stride(c);
  const std::vector<float> scores = make_scores(c, random_scores(9));
  const std::int64_t index_stride = c.budget + 1;
  DeviceBuffer<float> dscores(scores);
  DeviceBuffer<std::int32_t> dlengths(c.lengths);
  DeviceBuffer<std::int32_t> dindices(static_cast<std::size_t>(rows * index_stride));
  DeviceBuffer<std::int32_t> dcounts(static_cast<std::size_t>(rows));
  kernels::TopBSelectParams p;
  p.scores = dscores.get();
  p.score_stride = stride;
  p.lengths = dlengths.get();
  p.rows = rows;
  p.rows_per_request = c.rows_per_request;
  p.max_positions = c.max_positions;
  p.budget = c.budget;
  p.ensure_last = c.ensure_last;
  p.indices = dindices.get();
  p.index_stride = index_stride;
  p.counts = dcounts.get();

  cudaStream_t stream = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  SPECONTEXT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  kernels::launch_top_b_select(p, stream);
  SPECONTEXT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  SPECONTEXT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  for (const std::vector<std::int32_t>& lengths :
       {std::vector<std::int32_t>{3000, 20000}, {40000, 1}, {257, 30001}, {0, 256}}) {
    dlengths.upload(lengths);
    SPECONTEXT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto indices = dindices.download();
    const auto counts = dcounts.download();
    for (int r = 0; r < rows; ++r) {
      const int n = ref::top_b_valid_count(lengths[r / c.rows_per_request], 0, c.max_positions);
      const auto want = ref::top_b_row(scores.data() + r * stride, n, c.budget, c.ensure_last);
      ASSERT_EQ(counts[r], static_cast<std::int32_t>(want.size())) << "row " << r << " length " << lengths[r / c.rows_per_request];
      EXPECT_TRUE(std::equal(want.begin(), want.end(), indices.begin() + r * index_stride)) << "row " << r;
    }
  }
  SPECONTEXT_CUDA_CHECK(cudaGraphExecDestroy(exec));
  SPECONTEXT_CUDA_CHECK(cudaGraphDestroy(graph));
  SPECONTEXT_CUDA_CHECK(cudaStreamDestroy(stream));
}

// Launch validation throws before touching the device, so this runs without a GPU.
TEST(TopBSelect, RejectsBadParameters) {
  static float fake_scores[16];
  static std::int32_t ints[16];
  kernels::TopBSelectParams good;
  good.scores = fake_scores;
  good.score_stride = 8;
  good.lengths = ints;
  good.rows = 4;
  good.rows_per_request = 2;
  good.max_positions = 8;
  good.budget = 3;
  good.ensure_last = true;
  good.indices = ints;
  good.index_stride = 4;
  good.counts = ints;
  auto expect_reject = [](const kernels::TopBSelectParams& p, const std::string& needle) {
    try {
      kernels::launch_top_b_select(p, nullptr);
      ADD_FAILURE() << "accepted; expected a complaint about " << needle;
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("top_b_select: ", 0), 0u) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  auto p = good;
  p.budget = 0;
  expect_reject(p, "budget");
  p = good;
  p.index_stride = 3;  // budget + 1 needed with ensure_last
  expect_reject(p, "index_stride");
  p = good;
  p.score_stride = 7;
  expect_reject(p, "score_stride");
  p = good;
  p.rows = 3;
  expect_reject(p, "rows_per_request");
  p = good;
  p.rows_per_request = 0;
  expect_reject(p, "rows_per_request");
  p = good;
  p.rows = -1;
  expect_reject(p, "rows");
  p = good;
  p.max_positions = -1;
  expect_reject(p, "max_positions");
  p = good;
  p.max_positions = (1 << 30) + 1;
  p.score_stride = p.max_positions;
  expect_reject(p, "max_positions");
  for (int which = 0; which < 4; ++which) {
    p = good;
    if (which == 0) p.scores = nullptr;
    if (which == 1) p.lengths = nullptr;
    if (which == 2) p.indices = nullptr;
    if (which == 3) p.counts = nullptr;
    expect_reject(p, "null");
  }
  p = good;
  p.rows = 0;  // an empty batch launches nothing, null buffers included
  p.scores = nullptr;
  EXPECT_NO_THROW(kernels::launch_top_b_select(p, nullptr));
}

}  // namespace

// Hand-worked rows, independent of the engine: the highest scores, ties to the lower position,
// ascending output, +inf first, NaN last, signed zeros equal, and ensure_last.
TEST(TopBSelectReference, HandExamples) {
  using V = std::vector<std::int32_t>;
  const float a[6] = {3.0f, 1.0f, 3.0f, 2.0f, kInf, 0.0f};
  EXPECT_EQ(ref::top_b_row(a, 6, 1, false), V({4}));
  EXPECT_EQ(ref::top_b_row(a, 6, 2, false), V({0, 4}));  // 3 at 0 and 2 tie: 0 wins
  EXPECT_EQ(ref::top_b_row(a, 6, 3, false), V({0, 2, 4}));
  EXPECT_EQ(ref::top_b_row(a, 6, 4, false), V({0, 2, 3, 4}));
  EXPECT_EQ(ref::top_b_row(a, 6, 2, true), V({0, 4, 5}));  // position 5 appended
  EXPECT_EQ(ref::top_b_row(a, 5, 2, true), V({0, 4}));  // n = 5: position 4 already in
  EXPECT_EQ(ref::top_b_row(a, 6, 6, true), V({0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(ref::top_b_row(a, 3, 100, false), V({0, 1, 2}));  // n <= budget: everything
  EXPECT_EQ(ref::top_b_row(a, 0, 4, true), V({}));  // nothing valid, nothing appended
  const float z[4] = {-0.0f, 0.0f, -1.0f, 0.0f};
  EXPECT_EQ(ref::top_b_row(z, 4, 1, false), V({0}));  // -0.0 ties +0.0
  EXPECT_EQ(ref::top_b_row(z, 4, 2, false), V({0, 1}));
  EXPECT_EQ(ref::top_b_row(z + 1, 3, 1, false), V({0}));
  const float n[5] = {kNaN, -kInf, kNaN, -1e30f, kNaN};
  EXPECT_EQ(ref::top_b_row(n, 5, 1, false), V({3}));
  EXPECT_EQ(ref::top_b_row(n, 5, 2, false), V({1, 3}));
  EXPECT_EQ(ref::top_b_row(n, 5, 3, false), V({0, 1, 3}));  // then the lowest NaN
  EXPECT_EQ(ref::top_b_row(n, 5, 3, true), V({0, 1, 3, 4}));
  EXPECT_TRUE(ref::top_b_ranks_above(-kInf, kNaN));
  EXPECT_FALSE(ref::top_b_ranks_above(kNaN, kNaN));
  EXPECT_FALSE(ref::top_b_ranks_above(0.0f, -0.0f));
}

// Rows map to requests by r / rows_per_request; valid counts are length + offset clamped to
// [0, max_positions].
TEST(TopBSelectReference, RowsLengthsAndOffsets) {
  EXPECT_EQ(ref::top_b_valid_count(10, -1, 100), 9);
  EXPECT_EQ(ref::top_b_valid_count(0, -1, 100), 0);
  EXPECT_EQ(ref::top_b_valid_count(500, 0, 100), 100);
  EXPECT_EQ(ref::top_b_valid_count(std::numeric_limits<std::int32_t>::max(), 5, 100), 100);
  const float scores[4][4] = {{1, 4, 2, 3}, {4, 3, 2, 1}, {0, 0, 9, 0}, {5, 5, 5, 5}};
  const std::int32_t lengths[2] = {4, 3};
  ref::TopBSelectParams p;
  p.scores = &scores[0][0];
  p.score_stride = 4;
  p.lengths = lengths;
  p.length_offset = -1;  // rows 0, 1: 3 positions; rows 2, 3: 2
  p.rows = 4;
  p.rows_per_request = 2;
  p.max_positions = 4;
  p.budget = 1;
  p.ensure_last = true;
  using V = std::vector<std::int32_t>;
  EXPECT_EQ(ref::top_b_select(p), (std::vector<V>{{1, 2}, {0, 2}, {0, 1}, {0, 1}}));
  p.ensure_last = false;
  p.budget = 2;
  EXPECT_EQ(ref::top_b_select(p), (std::vector<V>{{1, 2}, {0, 1}, {0, 1}, {0, 1}}));
}

// The reference is the engine's head-level selection: on random rows, with continuous scores and
// with heavy ties, every budget from 1 past the row length.
TEST(TopBSelectReference, MatchesEngineSelectTopB) {
  std::mt19937 gen(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> level(-2, 2);
  for (int trial = 0; trial < 60; ++trial) {
    const int heads = 1 + trial % 8;
    const std::int64_t positions = 1 + static_cast<std::int64_t>(gen() % 3000);
    std::vector<float> scores(static_cast<std::size_t>(heads * positions));
    for (std::size_t i = 0; i < scores.size(); ++i) {
      switch (trial % 3) {
        case 0: scores[i] = normal(gen); break;
        case 1: scores[i] = static_cast<float>(level(gen)) * (gen() % 2 ? 1.0f : -1.0f); break;  // ties, +-0
        default: scores[i] = gen() % 97 == 0 ? kInf : (gen() % 5 == 0 ? -kInf : normal(gen)); break;
      }
    }
    for (std::int64_t budget : {std::int64_t{1}, std::int64_t{7}, positions / 3 + 1, positions - 1, positions, positions + 5}) {
      if (budget < 1) continue;
      const TokenSelection sel = select_top_b(scores, heads, positions, budget, SelectionLevel::Head);
      for (int h = 0; h < heads; ++h) {
        const auto want = sel.head(h);
        const auto got = ref::top_b_row(scores.data() + h * positions, static_cast<int>(positions), static_cast<int>(budget), false);
        ASSERT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end()))
            << "trial " << trial << " head " << h << " positions " << positions << " budget " << budget;
      }
    }
  }
}

}  // namespace specontext
