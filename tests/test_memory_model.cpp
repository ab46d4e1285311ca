// The paper's memory model against hand-computed values (PAPER.md §4.5's worked example).
#include <gtest/gtest.h>

#include <cmath>

#include "sim/memory_model.hpp"

namespace specontext {
namespace {

// DeepSeek-R1-Distill-Llama-8B on an 80 GiB GPU, R = 32, B = 2048 (PAPER.md §4.5).
MemoryModelInputs worked_example(BufferTerm term) {
  MemoryModelInputs in;
  in.gpu_memory_bytes = 80.0 * 1024 * 1024 * 1024;
  in.model_bytes = 16060522496.0;  // 8,030,261,248 params x 2 bytes
  in.draft_bytes = 849379328.0;    // the 0.42B-parameter EAGLE-3 draft x 2 bytes
  in.layers = 32;
  in.alpha = 4;
  in.requests = 32;
  in.budget = 2048;
  in.kv_bytes_per_token_layer = 4.0 * 8 * 128;  // 4 H D
  in.buffer_term = term;
  return in;
}

TEST(MemoryModel, WorkedExampleFirstThresholdByHand) {
  MemoryModel mm(worked_example(BufferTerm::Eq7));
  // S_0^T = floor((Mem - 1.3 (M_O + M_D)) / (4 R H D (L + 1 + alpha)))
  const double free = 85899345920.0 - 1.3 * (16060522496.0 + 849379328.0);
  const long long s0 = static_cast<long long>(std::floor(free / (4.0 * 32 * 8 * 128 * 37)));
  EXPECT_EQ(mm.thresholds()[0], s0);
  EXPECT_NEAR(static_cast<double>(s0), 13.2e3, 0.05e3);  // "S_0^T ≈ 13.2K tokens"
  EXPECT_NEAR(mm.kv_unit() * 37, 4.85e6, 0.01e6);        // "bytes per token ≈ 4.85 MB"
}

TEST(MemoryModel, WorkedExampleThresholdsBothBufferTerms) {
  const MemoryModel printed(worked_example(BufferTerm::Printed));
  const MemoryModel eq7(worked_example(BufferTerm::Eq7));
  // PAPER.md §4.5 table: printed (with Eq. 7's factor 4), in thousands of tokens.
  const struct { int i; double printed, eq7; } rows[] = {{1, 13.5, 13.5}, {8, 16.7, 16.3}, {16, 22.8, 21.7}, {24, 36.6, 33.7}, {32, 94.3, 84.4}};
  for (const auto& r : rows) {
    EXPECT_NEAR(printed.thresholds()[r.i] / 1e3, r.printed, 0.051) << "i=" << r.i;
    EXPECT_NEAR(eq7.thresholds()[r.i] / 1e3, r.eq7, 0.051) << "i=" << r.i;
  }
}

TEST(MemoryModel, ThresholdFormulaByHandForOneLayer) {
  const MemoryModel mm(worked_example(BufferTerm::Eq7));
  const double free = 85899345920.0 - 1.3 * (16060522496.0 + 849379328.0);
  const double unit = 32.0 * 4 * 8 * 128;  // 4 R H D
  const long long i = 5;
  const long long by_hand = static_cast<long long>(std::floor((free - i * 2048 * unit) / (unit * (32 + 1 + 4 - i))));
  EXPECT_EQ(mm.thresholds()[i], by_hand);
}

TEST(MemoryModel, ThresholdsIncreaseAndMatchEq8) {
  const MemoryModel mm(worked_example(BufferTerm::Eq7));
  const auto t = mm.thresholds();
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_GT(t[i], t[i - 1]);
  // With the buffer term of Eq. 7, Alg. 1's placement is Eq. 8's largest L_GPU at every S.
  for (long long S = 1000; S < t.back(); S += 97) EXPECT_EQ(mm.max_gpu_layers(S), 32 - mm.cpu_layers_at(S)) << "S=" << S;
  EXPECT_EQ(mm.max_gpu_layers(t.back() + 10), -1);
  EXPECT_FALSE(mm.fits_at(t.back()));
  EXPECT_TRUE(mm.fits_at(t.back() - 1));
}

TEST(MemoryModel, Alg1OffloadsOneLayerPerThresholdCrossed) {
  const MemoryModel mm(worked_example(BufferTerm::Eq7));
  const auto t = mm.thresholds();
  EXPECT_EQ(mm.cpu_layers_at(t[0] - 1), 0);
  EXPECT_EQ(mm.cpu_layers_at(t[0]), 1);
  EXPECT_EQ(mm.cpu_layers_at(t[2] - 1), 2);
  EXPECT_EQ(mm.cpu_layers_at(t[2]), 3);
  EXPECT_EQ(mm.cpu_layers_at(t[31]), 32);
  // At the end of a [2k, 32k] run (S = 34,816): S_24^T = 33.7K <= S < S_25^T = 36.4K, so 25 layers.
  EXPECT_EQ(mm.cpu_layers_at(2048 + 32768), 25);
}

TEST(MemoryModel, Eq6AndEq7ByHand) {
  const MemoryModel mm(worked_example(BufferTerm::Eq7));
  const double w = 1.3 * (16060522496.0 + 849379328.0), unit = 32.0 * 4 * 8 * 128;
  EXPECT_DOUBLE_EQ(mm.all_on_gpu(10000), w + unit * 37 * 10000);
  // 20 layers on GPU, 12 on host: 4R[(L_GPU + 1 + alpha) S + L_CPU B] H D
  EXPECT_DOUBLE_EQ(mm.split(10000, 20), w + unit * ((20 + 1 + 4) * 10000.0 + 12 * 2048.0));
  EXPECT_DOUBLE_EQ(mm.breakdown(10000, 20).kv_host, unit * 12 * 10000);
}

TEST(MemoryModel, MoreMemoryNeverLowersAThreshold) {
  MemoryModelInputs small = worked_example(BufferTerm::Eq7), big = small;
  big.gpu_memory_bytes *= 1.5;
  const auto a = MemoryModel(small).thresholds(), b = MemoryModel(big).thresholds();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_GE(b[i], a[i]);
}

TEST(MemoryModel, WeightsThatDoNotFitGiveNegativeThresholds) {
  MemoryModelInputs in = worked_example(BufferTerm::Eq7);
  in.gpu_memory_bytes = 4e9;  // a 16 GB model in a 4 GB cap
  const MemoryModel mm(in);
  EXPECT_LT(mm.thresholds()[0], 0);
  EXPECT_FALSE(mm.fits_at(1));
  EXPECT_EQ(mm.max_gpu_layers(1), -1);
}

TEST(MemoryModel, BadInputsAreRejected) {
  MemoryModelInputs in = worked_example(BufferTerm::Eq7);
  in.layers = 0;
  EXPECT_THROW(MemoryModel{in}, std::invalid_argument);
  in = worked_example(BufferTerm::Eq7);
  in.requests = 0;
  EXPECT_THROW(MemoryModel{in}, std::invalid_argument);
  EXPECT_THROW(parse_buffer_term("both"), std::exception);
}

}  // namespace
}  // namespace specontext
