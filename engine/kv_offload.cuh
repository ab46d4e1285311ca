#pragma once
// KV of offloaded layers in pinned host memory, with elastic loading (PAPER.md §3.3, §4):
// per (request, KV head) a GPU buffer of B slots holds the K/V of the past positions the step's
// selection lists, plus slot B for the token entering the step. Each decode step:
//   plan       elastic_plan on the compute stream, after the selection: S_now − S_last is assigned
//              to the slots freed by S_last − S_now, in place (one table for every offloaded layer:
//              the same lists serve every layer);
//   prefetch   elastic_gather of the planned rows, per group of offloaded layers, on a copy stream
//              with one event per group (asynchronous, c1+c2), or on the compute stream just before
//              the layer needs it (synchronous, c1);
//   per layer  the entering token's K/V goes to slot B (rope_kv_append's fixed row) and through
//              elastic_store_current to host position t; attention reads the slots via the plan's
//              slot lists; layer l waits only for its own group's event.
// Host layout [max_requests][kv_heads][max_context][layer slot][K | V][head_dim] bf16: one position
// of all offloaded layers is one contiguous row (512 B per layer at head_dim 128), so a group of g
// layers moves g * 512 B per selected position (H200.md: rows of 1 KiB or more reach the link rate).
// Layer slot of layer l: L - 1 - l (the last layer first, as the memory manager offloads them).
// Prefill stays dense: an offloaded layer's earlier positions are staged into a one-layer GPU
// buffer, attended there, and the chunk's new rows are written back to host memory.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "engine/cuda_device_array.cuh"
#include "engine/pinned_host_buffer.cuh"
#include "kernels/decode_attention.cuh"
#include "kernels/prefill_attention.cuh"
#include "kernels/rope_kv_append.cuh"

namespace specontext {

struct KvOffloadShape {
  int layers = 0, offloaded = 0;  // host memory and slot buffers for the last `offloaded` layers
  int initially_active = -1;      // of which this many start on the host (-1: all); activate_next_layer adds one
  int max_requests = 0, kv_heads = 0, head_dim = 0;
  std::int64_t max_context = 0, budget = 0;
  int prefetch_group = 4;  // offloaded layers per gather and event
  bool asynchronous = true;
  int gather_blocks = 32;  // grid cap of a gather (it competes with the forward for SMs)
  HostPages host_pages = HostPages::Cuda;  // how the host KV is pinned (engine/pinned_host_buffer.cuh)
  std::int64_t max_rows = 1;  // rows of a prefill chunk
};

class KvOffload {
 public:
  // Pins host memory for the offloaded layers' KV (slow: about 0.5 s per GiB on the H200, so once,
  // at construction, outside every timed region).
  explicit KvOffload(const KvOffloadShape& shape);
  ~KvOffload();
  KvOffload(const KvOffload&) = delete;
  KvOffload& operator=(const KvOffload&) = delete;

  const KvOffloadShape& shape() const { return shape_; }
  bool offloaded(int layer) const { return layer >= shape_.layers - active_; }
  int active() const { return active_; }
  std::size_t host_huge_page_bytes() const { return host_buffer_.huge_page_bytes(); }
  // The layer the memory manager moves next (the last GPU-resident one), or -1 when none is left.
  int next_layer() const { return active_ < shape_.offloaded ? shape_.layers - 1 - active_ : -1; }
  // Moves next_layer() to host memory: its keys and values of positions 0..lengths[r]-1 of every
  // request, from the GPU cache [max_requests][kv_heads][capacity][head_dim], on `stream`; every
  // slot buffer then starts empty (the next step loads all B rows once). The caller frees the cache
  // after the stream has finished the copies.
  void activate_next_layer(const bf16_bits* k_cache, const bf16_bits* v_cache, std::int64_t capacity,
                           const std::vector<std::int64_t>& lengths, cudaStream_t stream);
  int layer_slot(int layer) const { return shape_.layers - 1 - layer; }
  static double device_bytes(const KvOffloadShape& shape);
  static double host_bytes(const KvOffloadShape& shape);

  // A request starts over: its slots hold nothing.
  void reset_request(int request, cudaStream_t stream);
  // Benchmarks: positions 0..length-1 of request r get random K/V in every offloaded layer.
  void fill_random(int request, std::int64_t length, std::uint64_t seed, cudaStream_t stream);

  // Decode step, after the selection: the plan of rows 0..rows-1 (lists of LLM positions as
  // CudaSparseDecode writes them), then the prefetch (asynchronous: forked onto the copy stream).
  struct Lists {
    const std::int32_t* indices = nullptr;
    std::int64_t request_stride = 0, head_stride = 0;
    const std::int32_t* counts = nullptr;
    std::int64_t count_request_stride = 0, count_head_stride = 0;
  };
  void plan_and_prefetch(const Lists& lists, const std::int32_t* slots, const std::int32_t* positions, int rows, cudaStream_t stream);
  // In the forward of an offloaded layer: where rope_kv_append puts the entering token (slot B).
  void redirect_append(int layer, kernels::RopeKvAppendParams& r) const;
  // After the append: the token's K/V to host; then waits for (or, synchronously, runs) the layer's
  // gather and points `a` at the layer's slots and the plan's slot lists.
  void before_attention(int layer, kernels::DecodeAttentionParams& a, int rows, cudaStream_t stream);
  // Marks prefetch (the plan; synchronous gathers) and prefetch_wait on this timer when set (not owned).
  void set_timer(class PhaseTimer* timer) { timer_ = timer; }
  // End of the forward: the compute stream waits for the copy stream (joins a graph capture).
  void join(cudaStream_t stream);
  // Bytes the elastic loads moved host-to-device since the last call (synchronises `stream`).
  double take_loaded_bytes(cudaStream_t stream);

  // Prefill chunk of one request at positions first..first+rows-1: stage_prefill copies the layer's
  // earlier positions into the one-layer GPU buffer and redirects the append there;
  // redirect_prefill_attention points the attention at it; after_prefill_attention writes the
  // chunk's rows back to host memory.
  void stage_prefill(int layer, int request, std::int64_t first, kernels::RopeKvAppendParams& r, cudaStream_t stream);
  void redirect_prefill_attention(kernels::PrefillAttentionParams& a) const;
  void after_prefill_attention(int layer, int request, std::int64_t first, std::int64_t rows, cudaStream_t stream);

 private:
  std::uint16_t* host_row(int request, int head, std::int64_t position, int slot) const;
  int group_of(int slot) const { return slot / shape_.prefetch_group; }
  void gather(int slot_begin, int slot_end, int rows, cudaStream_t stream);
  // 2D copies between the host layout and the one-layer staging buffer, per head, K and V.
  void copy_staging(int slot, int request, std::int64_t first, std::int64_t rows, bool to_host, cudaStream_t stream);

  KvOffloadShape shape_;
  PinnedHostBuffer host_buffer_;  // the offloaded layers' KV
  std::uint16_t* host() const { return static_cast<std::uint16_t*>(host_buffer_.host()); }
  std::uint16_t* host_device() const { return static_cast<std::uint16_t*>(host_buffer_.device()); }
  DeviceArray<bf16_bits> k_slots_, v_slots_;  // [offloaded][max_requests][kv_heads][B + 1][head_dim]
  DeviceArray<std::int32_t> slot_positions_, attend_slots_, attend_counts_, load_positions_, load_slots_, load_counts_;
  DeviceArray<unsigned long long> loaded_total_;
  DeviceArray<bf16_bits> staging_k_, staging_v_;  // [kv_heads][max_context][head_dim]: one layer of one request
  DeviceArray<std::int32_t> zero_slots_;          // rows of the staging buffer (all 0)
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t planned_ = nullptr, copies_done_ = nullptr;
  std::vector<cudaEvent_t> group_ready_;
  int active_ = 0;
  class PhaseTimer* timer_ = nullptr;
  double pending_bytes_ = 0;  // loads counted before the last change of active_
  const std::int32_t* step_slots_ = nullptr;
  const std::int32_t* step_positions_ = nullptr;
  int step_rows_ = 0;
};

}  // namespace specontext
