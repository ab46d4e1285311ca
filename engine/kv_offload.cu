#include "engine/kv_offload.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/nvtx.hpp"
#include "engine/phase_timer.cuh"
#include "kernels/elastic_gather.cuh"
#include "kernels/elastic_plan.cuh"
#include "kernels/fill_random.cuh"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

std::size_t slots_per_layer(const KvOffloadShape& s) {
  return static_cast<std::size_t>(s.max_requests) * s.kv_heads * static_cast<std::size_t>(s.budget + 1) * s.head_dim;
}

}  // namespace

double KvOffload::host_bytes(const KvOffloadShape& s) {
  return 2.0 * 2.0 * s.max_requests * s.kv_heads * static_cast<double>(s.max_context) * s.offloaded * s.head_dim;
}

double KvOffload::device_bytes(const KvOffloadShape& s) {
  const double slot_buffers = 2.0 * 2.0 * s.offloaded * static_cast<double>(slots_per_layer(s));
  const double tables = 4.0 * s.max_requests * s.kv_heads * (4.0 * static_cast<double>(s.budget) + 3.0);
  const double staging = 2.0 * 2.0 * s.kv_heads * static_cast<double>(s.max_context) * s.head_dim + 4.0 * static_cast<double>(s.max_rows);
  return slot_buffers + tables + staging;
}

KvOffload::KvOffload(const KvOffloadShape& shape) : shape_(shape) {
  const KvOffloadShape& s = shape_;
  if (s.offloaded < 1 || s.offloaded > s.layers)
    throw ConfigError("--offload-layers", "", "must be in 1.." + std::to_string(s.layers) + ", got " + std::to_string(s.offloaded));
  if (s.budget < 1 || s.budget > kernels::kElasticPlanMaxSlots)
    throw ConfigError("--budget", "", "offloaded layers hold at most " + std::to_string(kernels::kElasticPlanMaxSlots) + " slots per head, got " +
                                          std::to_string(s.budget));
  if (s.prefetch_group < 1) throw ConfigError("--prefetch-group", "", "must be positive");
  if (s.gather_blocks < 1) throw ConfigError("--gather-blocks", "", "must be positive");
  active_ = s.initially_active < 0 ? s.offloaded : std::min(s.initially_active, s.offloaded);
  const auto host_elems = static_cast<std::size_t>(host_bytes(s) / 2);
  host_buffer_ = PinnedHostBuffer(host_elems * 2, s.host_pages);
  k_slots_ = DeviceArray<bf16_bits>(static_cast<std::size_t>(s.offloaded) * slots_per_layer(s));
  v_slots_ = DeviceArray<bf16_bits>(k_slots_.count);
  const std::size_t pairs = static_cast<std::size_t>(s.max_requests) * s.kv_heads, b = static_cast<std::size_t>(s.budget);
  slot_positions_ = DeviceArray<std::int32_t>(pairs * b);
  SPECONTEXT_CUDA_CHECK(cudaMemset(slot_positions_.ptr, 0xff, slot_positions_.count * 4));  // -1: empty
  attend_slots_ = DeviceArray<std::int32_t>(pairs * (b + 1));
  attend_counts_ = DeviceArray<std::int32_t>(pairs);
  load_positions_ = DeviceArray<std::int32_t>(pairs * b);
  load_slots_ = DeviceArray<std::int32_t>(pairs * b);
  load_counts_ = DeviceArray<std::int32_t>(pairs);
  loaded_total_ = DeviceArray<unsigned long long>(1);
  SPECONTEXT_CUDA_CHECK(cudaMemset(loaded_total_.ptr, 0, 8));
  const std::size_t staging = static_cast<std::size_t>(s.kv_heads) * static_cast<std::size_t>(s.max_context) * s.head_dim;
  staging_k_ = DeviceArray<bf16_bits>(staging);
  staging_v_ = DeviceArray<bf16_bits>(staging);
  zero_slots_ = DeviceArray<std::int32_t>(static_cast<std::size_t>(std::max<std::int64_t>(s.max_rows, 1)));
  SPECONTEXT_CUDA_CHECK(cudaMemset(zero_slots_.ptr, 0, zero_slots_.count * 4));
  SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  SPECONTEXT_CUDA_CHECK(cudaEventCreateWithFlags(&planned_, cudaEventDisableTiming));
  SPECONTEXT_CUDA_CHECK(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming));
  group_ready_.resize(static_cast<std::size_t>((s.offloaded + s.prefetch_group - 1) / s.prefetch_group));
  for (cudaEvent_t& e : group_ready_) SPECONTEXT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
}

KvOffload::~KvOffload() {
  for (cudaEvent_t e : group_ready_) cudaEventDestroy(e);
  if (planned_) cudaEventDestroy(planned_);
  if (copies_done_) cudaEventDestroy(copies_done_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
}

std::uint16_t* KvOffload::host_row(int request, int head, std::int64_t position, int slot) const {
  const KvOffloadShape& s = shape_;
  return host() + ((((static_cast<std::int64_t>(request) * s.kv_heads + head) * s.max_context + position) * s.offloaded + slot) * 2) * s.head_dim;
}

void KvOffload::reset_request(int request, cudaStream_t stream) {
  const std::size_t per = static_cast<std::size_t>(shape_.kv_heads) * static_cast<std::size_t>(shape_.budget);
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(slot_positions_.ptr + static_cast<std::size_t>(request) * per, 0xff, per * 4, stream));
}

void KvOffload::fill_random(int request, std::int64_t length, std::uint64_t seed, cudaStream_t stream) {
  const KvOffloadShape& s = shape_;
  for (int h = 0; h < s.kv_heads; ++h) {
    std::uint16_t* base = host_device() + (host_row(request, h, 0, 0) - host());
    kernels::launch_fill_random({base, length * s.offloaded * 2 * s.head_dim, seed * 104729u + static_cast<std::uint64_t>(h), 0.0f, 1.0f}, stream);
  }
}

void KvOffload::gather(int slot_begin, int slot_end, int rows, cudaStream_t stream) {
  kernels::ElasticGatherParams g;
  g.host_kv = host_device();
  g.host_positions = shape_.max_context;
  g.host_layers = shape_.offloaded;
  g.layer_begin = slot_begin;
  g.layer_end = slot_end;
  g.k_slots = k_slots_.ptr;
  g.v_slots = v_slots_.ptr;
  g.slots = step_slots_;
  g.load_positions = load_positions_.ptr;
  g.load_slots = load_slots_.ptr;
  g.load_counts = load_counts_.ptr;
  g.requests = rows;
  g.kv_heads = shape_.kv_heads;
  g.max_requests = shape_.max_requests;
  g.slot_count = static_cast<int>(shape_.budget);
  g.head_dim = shape_.head_dim;
  g.max_blocks = shape_.gather_blocks;
  kernels::launch_elastic_gather(g, stream);
}

void KvOffload::plan_and_prefetch(const Lists& lists, const std::int32_t* slots, const std::int32_t* positions, int rows, cudaStream_t stream) {
  step_slots_ = slots;
  step_positions_ = positions;
  step_rows_ = rows;
  if (active_ == 0) return;  // c3 has not moved a layer yet
  NvtxRange range("prefetch");
  kernels::ElasticPlanParams p;
  p.selection = lists.indices;
  p.sel_request_stride = lists.request_stride;
  p.sel_head_stride = lists.head_stride;
  p.selection_counts = lists.counts;
  p.count_request_stride = lists.count_request_stride;
  p.count_head_stride = lists.count_head_stride;
  p.slots = slots;
  p.current = positions;
  p.slot_positions = slot_positions_.ptr;
  p.requests = rows;
  p.kv_heads = shape_.kv_heads;
  p.slot_count = static_cast<int>(shape_.budget);
  p.max_requests = shape_.max_requests;
  p.attend_slots = attend_slots_.ptr;
  p.attend_counts = attend_counts_.ptr;
  p.load_positions = load_positions_.ptr;
  p.load_slots = load_slots_.ptr;
  p.load_counts = load_counts_.ptr;
  p.loaded_total = loaded_total_.ptr;
  kernels::launch_elastic_plan(p, stream);
  if (timer_) timer_->lap(StepPhase::Prefetch, stream);
  if (!shape_.asynchronous) return;
  // Fork: the copy stream gathers group by group, in the order the forward reaches the layers
  // (layer slots descending), while the compute stream runs the GPU-resident layers.
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(planned_, stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, planned_, 0));
  const int groups = (active_ + shape_.prefetch_group - 1) / shape_.prefetch_group;
  for (int g = groups - 1; g >= 0; --g) {
    gather(g * shape_.prefetch_group, std::min((g + 1) * shape_.prefetch_group, active_), rows, copy_stream_);
    SPECONTEXT_CUDA_CHECK(cudaEventRecord(group_ready_[static_cast<std::size_t>(g)], copy_stream_));
  }
  SPECONTEXT_CUDA_CHECK(cudaEventRecord(copies_done_, copy_stream_));
}

void KvOffload::redirect_append(int layer, kernels::RopeKvAppendParams& r) const {
  const std::int64_t per_layer = static_cast<std::int64_t>(slots_per_layer(shape_));
  const int slot = layer_slot(layer);
  r.k_cache = k_slots_.ptr + slot * per_layer;
  r.v_cache = v_slots_.ptr + slot * per_layer;
  r.cache_head_stride = (shape_.budget + 1) * shape_.head_dim;
  r.cache_request_stride = shape_.kv_heads * r.cache_head_stride;
  r.cache_row = static_cast<std::int32_t>(shape_.budget);  // slot B: the entering token
}

void KvOffload::before_attention(int layer, kernels::DecodeAttentionParams& a, int rows, cudaStream_t stream) {
  const int slot = layer_slot(layer);
  const std::int64_t per_layer = static_cast<std::int64_t>(slots_per_layer(shape_));
  kernels::ElasticStoreCurrentParams st;
  st.host_kv = host_device();
  st.host_positions = shape_.max_context;
  st.host_layers = shape_.offloaded;
  st.layer_begin = slot;
  st.layer_end = slot + 1;
  st.k_slots = k_slots_.ptr;
  st.v_slots = v_slots_.ptr;
  st.slots = step_slots_;
  st.current = step_positions_;
  st.requests = rows;
  st.kv_heads = shape_.kv_heads;
  st.max_requests = shape_.max_requests;
  st.slot_count = static_cast<int>(shape_.budget);
  st.head_dim = shape_.head_dim;
  st.max_blocks = shape_.gather_blocks;
  kernels::launch_elastic_store_current(st, stream);
  if (timer_) timer_->lap(StepPhase::Attention, stream);  // the layer's norm, QKV, RoPE and the store
  if (shape_.asynchronous) {
    SPECONTEXT_CUDA_CHECK(cudaStreamWaitEvent(stream, group_ready_[static_cast<std::size_t>(group_of(slot))], 0));
    if (timer_) timer_->lap(StepPhase::PrefetchWait, stream);
  } else {
    gather(slot, slot + 1, rows, stream);
    if (timer_) timer_->lap(StepPhase::Prefetch, stream);
  }
  const std::int64_t b1 = shape_.budget + 1;
  a.k_cache = k_slots_.ptr + slot * per_layer;
  a.v_cache = v_slots_.ptr + slot * per_layer;
  a.kv_head_stride = b1 * shape_.head_dim;
  a.kv_request_stride = shape_.kv_heads * a.kv_head_stride;
  a.max_context = static_cast<int>(b1);
  a.max_length = static_cast<int>(b1);
  a.indices = attend_slots_.ptr;
  a.index_request_stride = shape_.kv_heads * b1;
  a.index_head_stride = b1;
  a.index_counts = attend_counts_.ptr;
  a.count_request_stride = shape_.kv_heads;
  a.count_head_stride = 1;
}

void KvOffload::activate_next_layer(const bf16_bits* k_cache, const bf16_bits* v_cache, std::int64_t capacity,
                                    const std::vector<std::int64_t>& lengths, cudaStream_t stream) {
  const int layer = next_layer();
  if (layer < 0) throw std::logic_error("KvOffload: every layer it holds is offloaded already");
  const KvOffloadShape& s = shape_;
  const int slot = layer_slot(layer);
  const std::size_t width = static_cast<std::size_t>(s.head_dim) * 2;
  const std::size_t host_pitch = static_cast<std::size_t>(s.offloaded) * 2 * width;
  for (int r = 0; r < s.max_requests; ++r) {
    const std::int64_t len = lengths.at(static_cast<std::size_t>(r));
    for (int h = 0; len > 0 && h < s.kv_heads; ++h)
      for (int kv = 0; kv < 2; ++kv) {
        const bf16_bits* src = (kv ? v_cache : k_cache) + ((static_cast<std::int64_t>(r) * s.kv_heads + h) * capacity) * s.head_dim;
        SPECONTEXT_CUDA_CHECK(cudaMemcpy2DAsync(host_row(r, h, 0, slot) + kv * s.head_dim, host_pitch, src, width, width,
                                                static_cast<std::size_t>(len), cudaMemcpyDeviceToHost, stream));
      }
  }
  // The slot tables serve every offloaded layer; the new one's slots hold nothing yet.
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(slot_positions_.ptr, 0xff, slot_positions_.count * 4, stream));
  pending_bytes_ = take_loaded_bytes(stream);  // at the old layer count
  ++active_;
}

void KvOffload::join(cudaStream_t stream) {
  // Before c3's first move nothing was recorded on copies_done_: no wait (and none captured in a graph).
  if (shape_.asynchronous && active_ > 0) SPECONTEXT_CUDA_CHECK(cudaStreamWaitEvent(stream, copies_done_, 0));
}

double KvOffload::take_loaded_bytes(cudaStream_t stream) {
  unsigned long long n = 0;
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(&n, loaded_total_.ptr, 8, cudaMemcpyDeviceToHost, stream));
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(loaded_total_.ptr, 0, 8, stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(stream));
  // A loaded (request, head, position) moves K and V of every layer on the host.
  const double bytes = pending_bytes_ + static_cast<double>(n) * 2.0 * 2.0 * shape_.head_dim * active_;
  pending_bytes_ = 0;
  return bytes;
}

void KvOffload::copy_staging(int slot, int request, std::int64_t first, std::int64_t rows, bool to_host, cudaStream_t stream) {
  if (rows <= 0) return;
  const KvOffloadShape& s = shape_;
  const std::size_t width = static_cast<std::size_t>(s.head_dim) * 2;
  const std::size_t host_pitch = static_cast<std::size_t>(s.offloaded) * 2 * width;
  for (int h = 0; h < s.kv_heads; ++h)
    for (int kv = 0; kv < 2; ++kv) {
      std::uint16_t* host = host_row(request, h, first, slot) + kv * s.head_dim;
      std::uint16_t* dev = (kv ? staging_v_.ptr : staging_k_.ptr) + (static_cast<std::int64_t>(h) * s.max_context + first) * s.head_dim;
      if (to_host)
        SPECONTEXT_CUDA_CHECK(cudaMemcpy2DAsync(host, host_pitch, dev, width, width, static_cast<std::size_t>(rows), cudaMemcpyDeviceToHost, stream));
      else
        SPECONTEXT_CUDA_CHECK(cudaMemcpy2DAsync(dev, width, host, host_pitch, width, static_cast<std::size_t>(rows), cudaMemcpyHostToDevice, stream));
    }
}

void KvOffload::stage_prefill(int layer, int request, std::int64_t first, kernels::RopeKvAppendParams& r, cudaStream_t stream) {
  copy_staging(layer_slot(layer), request, 0, first, false, stream);
  r.k_cache = staging_k_.ptr;
  r.v_cache = staging_v_.ptr;
  r.slots = zero_slots_.ptr;
  r.cache_head_stride = shape_.max_context * shape_.head_dim;
  r.cache_request_stride = shape_.kv_heads * r.cache_head_stride;
  r.cache_row = -1;
}

void KvOffload::redirect_prefill_attention(kernels::PrefillAttentionParams& a) const {
  a.k_cache = staging_k_.ptr;
  a.v_cache = staging_v_.ptr;
  a.slots = zero_slots_.ptr;
  a.kv_head_stride = shape_.max_context * shape_.head_dim;
  a.kv_request_stride = shape_.kv_heads * a.kv_head_stride;
  a.max_context = static_cast<int>(shape_.max_context);
}

void KvOffload::after_prefill_attention(int layer, int request, std::int64_t first, std::int64_t rows, cudaStream_t stream) {
  copy_staging(layer_slot(layer), request, first, rows, true, stream);
}

}  // namespace specontext
