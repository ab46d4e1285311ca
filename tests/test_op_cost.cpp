// Operation costs against hand counts, and the roofline that turns them into time.
#include <gtest/gtest.h>

#include "sim/hardware.hpp"
#include "sim/model_shape.hpp"
#include "sim/selection_ops.hpp"
#include "sim/transformer_ops.hpp"

namespace specontext {
namespace {

ModelShape llama8b() {
  ModelShape m;
  m.name = "llama8b";
  m.layers = 32;
  m.hidden = 4096;
  m.q_heads = 32;
  m.kv_heads = 8;
  m.head_dim = 128;
  m.ffn = 14336;
  m.vocab = 128256;
  return m;
}

Hardware roofline_machine() {
  Hardware hw;
  hw.hbm_bandwidth_Bps = 4e12;
  hw.hbm_efficiency = 0.5;  // 2e12 achievable
  hw.dense_bf16_flops = 1e15;
  hw.compute_efficiency = 0.8;  // 8e14 achievable
  hw.kernel_gap_s = 1e-6;
  hw.kernel_launch_overhead_s = 5e-6;
  hw.h2d_bandwidth_Bps = 50e9;
  hw.d2h_bandwidth_Bps = 50e9;
  hw.host_memory_bandwidth_Bps = 1e12;
  hw.gather_row_efficiency = {{256, 0.4}, {1024, 0.9}};
  return hw;
}

TEST(OpCost, QkvProjectionByHand) {
  const Op op = ops::qkv_projection(llama8b(), 0, 4);
  // 4 tokens x 4096 in x (32 + 2*8)*128 = 6144 out
  EXPECT_DOUBLE_EQ(op.flops, 2.0 * 4 * 4096 * 6144);
  EXPECT_DOUBLE_EQ(op.hbm_bytes, 4096.0 * 6144 * 2 + 4.0 * (4096 + 6144) * 2);
}

TEST(OpCost, FfnStreamsThreeMatrices) {
  const Op op = ops::ffn(llama8b(), 0, 1);
  EXPECT_DOUBLE_EQ(op.flops, 2.0 * 3 * 4096 * 14336 + 4.0 * 4096);
  EXPECT_DOUBLE_EQ(op.hbm_bytes, 3.0 * 4096 * 14336 * 2 + (2.0 * 4096 + 4.0 * 14336) * 2);
}

TEST(OpCost, DecodeAttentionReadsEachKvOnce) {
  const Op op = ops::decode_attention(llama8b(), 3, 2, 1000);
  // R=2, S=1000: K and V of 8 heads x 128 dims, 2 bytes; q in and out per query head
  EXPECT_DOUBLE_EQ(op.hbm_bytes, 2.0 * 1000 * 2 * 8 * 128 * 2 + 2.0 * 2 * 32 * 128 * 2);
  EXPECT_DOUBLE_EQ(op.flops, 4.0 * 2 * 32 * 128 * 1000);
  EXPECT_EQ(op.layer, 3);
}

TEST(OpCost, KvBytesPerTokenIs128KiBOverAllLayers) {
  // PAPER.md §4.5: 4 GB of KV for 32K tokens on Llama-3.1-8B = 128 KiB per token.
  EXPECT_DOUBLE_EQ(ops::kv_bytes_per_token_layer(llama8b()) * 32, 128.0 * 1024);
  EXPECT_DOUBLE_EQ(ops::kv_row_bytes(llama8b()), 512.0);  // K|V of one head, one token
}

TEST(OpCost, RooflinePicksTheSlowerOfComputeAndMemory) {
  const Hardware hw = roofline_machine();
  Op mem;
  mem.resource = Resource::Gpu;
  mem.hbm_bytes = 2e9;  // 1 ms at 2e12
  mem.flops = 1e9;      // 1.25 us at 8e14
  mem.launches = 3;
  OpTime t = op_time(mem, hw);
  EXPECT_NEAR(t.seconds, 1e-3 + 3e-6, 1e-12);
  EXPECT_STREQ(t.bound, "hbm");
  Op comp = mem;
  comp.flops = 1.6e12;  // 2 ms
  t = op_time(comp, hw);
  EXPECT_NEAR(t.seconds, 2e-3 + 3e-6, 1e-12);
  EXPECT_STREQ(t.bound, "compute");
  comp.efficiency = 0.5;  // a poor kernel: twice as long
  EXPECT_NEAR(op_time(comp, hw).seconds, 4e-3 + 3e-6, 1e-12);
}

TEST(OpCost, LinkGathersDerateBySmallRows) {
  const Hardware hw = roofline_machine();
  Op bulk;
  bulk.resource = Resource::H2D;
  bulk.link_bytes = 50e6;  // 1 ms at 50 GB/s
  EXPECT_NEAR(op_time(bulk, hw).seconds, 1e-3, 1e-12);
  Op rows = bulk;
  rows.link_row_bytes = 256;  // 40% of the copy rate
  EXPECT_NEAR(op_time(rows, hw).seconds, 2.5e-3, 1e-12);
  // halfway between 256 and 1024 on a log scale: 512 B -> 0.65
  EXPECT_NEAR(hw.gather_efficiency(512), 0.65, 1e-12);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(64), 0.4);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(1 << 20), 0.9);
}

// Rows gathered from a large host buffer cannot beat the per-row floor (address translation):
// time = max(bytes / byte rate, rows x floor(footprint)).
TEST(OpCost, GatherFromALargeBufferIsBoundByRows) {
  Hardware hw = roofline_machine();
  hw.gather_row_seconds_by_footprint = {{1e9, 5e-9}, {16e9, 40e-9}};
  Op small;
  small.resource = Resource::H2D;
  small.link_row_bytes = 512;            // 0.65 x 50 GB/s = 32.5 GB/s
  small.link_bytes = 512 * 1e5;          // 1e5 rows: 1.5754 ms by bytes
  const double by_bytes = 512e5 / 32.5e9;
  EXPECT_NEAR(op_time(small, hw).seconds, by_bytes, 1e-12) << "no buffer named: no floor";
  small.link_footprint_bytes = 1e9;      // floor 0.5 ms: the bytes bind
  EXPECT_NEAR(op_time(small, hw).seconds, by_bytes, 1e-12);
  small.link_footprint_bytes = 4e9;      // halfway (log) from 1 to 16 GB: 22.5 ns a row, 2.25 ms
  EXPECT_NEAR(op_time(small, hw).seconds, 2.25e-3, 1e-12);
  small.link_footprint_bytes = 16e9;     // 40 ns a row: 4 ms
  EXPECT_NEAR(op_time(small, hw).seconds, 4e-3, 1e-12);
  Op big = small;                        // 2 KiB rows at 0.9 x 50 GB/s: 4.551 ms by bytes, above the 4 ms floor
  big.link_row_bytes = 2048;
  big.link_bytes = 2048 * 1e5;
  EXPECT_NEAR(op_time(big, hw).seconds, 2048e5 / 45e9, 1e-12);
  Op whole = small;                      // one contiguous copy has no rows to translate
  whole.link_row_bytes = 0;
  EXPECT_NEAR(op_time(whole, hw).seconds, 512e5 / 50e9, 1e-12);
  // the GPU time a concurrent gather costs follows the same link time
  hw.gather_gpu_slowdown = 0.1;
  Op contention;
  contention.concurrent_gather_bytes = small.link_bytes;
  contention.link_row_bytes = 512;
  contention.link_footprint_bytes = 16e9;
  EXPECT_NEAR(op_time(contention, hw).seconds, 0.1 * 4e-3, 1e-12);
}

// A GPU op standing for a gather beside it costs hw.gather_gpu_slowdown of the gather's link time.
TEST(OpCost, ConcurrentGatherSlowsTheGpuStream) {
  Hardware hw = roofline_machine();
  hw.gather_gpu_slowdown = 0.1;
  Op contention;
  contention.resource = Resource::Gpu;
  contention.concurrent_gather_bytes = 50e6;  // 1 ms at 50 GB/s in one piece, 2.5 ms in 256 B rows
  EXPECT_NEAR(op_time(contention, hw).seconds, 1e-4, 1e-12);
  contention.link_row_bytes = 256;
  EXPECT_NEAR(op_time(contention, hw).seconds, 2.5e-4, 1e-12);
  EXPECT_STREQ(op_time(contention, hw).bound, "contention");
  contention.hbm_bytes = 2e9;  // 1 ms of its own: the slowdown adds to it
  EXPECT_NEAR(op_time(contention, hw).seconds, 1e-3 + 2.5e-4, 1e-12);
  EXPECT_STREQ(op_time(contention, hw).bound, "hbm");
}

// Reads through index lists run at hbm_gather_efficiency of the streaming rate; sparse attention's do.
TEST(OpCost, IndexedReadsDerateByTheGatherEfficiency) {
  Hardware hw = roofline_machine();
  hw.hbm_gather_efficiency = 0.5;
  Op streamed;
  streamed.hbm_bytes = 2e9;  // 1 ms at the 2e12 achievable
  EXPECT_NEAR(op_time(streamed, hw).seconds, 1e-3, 1e-12);
  Op indexed = streamed;
  indexed.indexed_reads = true;
  EXPECT_NEAR(op_time(indexed, hw).seconds, 2e-3, 1e-12);
  EXPECT_TRUE(ops::sparse_attention(llama8b(), 0, 4, 2048).indexed_reads);
  EXPECT_FALSE(ops::decode_attention(llama8b(), 0, 4, 2048).indexed_reads);
}

TEST(OpCost, HostOpsPayLaunches) {
  const Hardware hw = roofline_machine();
  Op h;
  h.resource = Resource::Host;
  h.host_seconds = 1e-4;
  h.launches = 10;
  EXPECT_NEAR(op_time(h, hw).seconds, 1e-4 + 10 * 5e-6, 1e-12);
}

TEST(OpCost, SelectionOpsByHand) {
  const ModelShape m = llama8b();
  const Op scores = ops::candidate_scores("s", m, -1, 1, 1000, 2.0);
  EXPECT_DOUBLE_EQ(scores.flops, 2.0 * 32 * 128 * 1000 * 2 + 5.0 * 32 * 1000);
  EXPECT_DOUBLE_EQ(scores.hbm_bytes, 8.0 * 1000 * 2 * 128 * 2 + 32.0 * 1000 * 4 * 3);
  const Op gather = ops::host_gather("g", Resource::H2D, m, 5, 2, 100, 512, 3e9);
  EXPECT_DOUBLE_EQ(gather.link_bytes, 2.0 * 8 * 100 * 512);
  EXPECT_DOUBLE_EQ(gather.link_row_bytes, 512);
  EXPECT_DOUBLE_EQ(gather.link_footprint_bytes, 3e9);
}

}  // namespace
}  // namespace specontext
