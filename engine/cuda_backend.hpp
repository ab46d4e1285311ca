#pragma once
// The CUDA backend: bf16 weights and KV cache on the GPU, fp32 residual stream and
// accumulation, cuBLAS projections with the requests batched, our kernels for the rest, the
// decode step captured once per batch size in a CUDA graph and replayed.
// This header has no CUDA types, so host-only code can hold a backend.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/attention_mass.hpp"
#include "engine/attention_probe.hpp"
#include "engine/backend.hpp"
#include "engine/eagle3_draft.hpp"
#include "engine/retrieval_head.hpp"
#include "engine/model_config.hpp"
#include "engine/pinned_host_buffer.cuh"
#include "engine/step_profile.hpp"
#include "engine/selection_policy.hpp"
#include "engine/synthetic_selection.hpp"
#include "engine/weights.hpp"

namespace specontext {

struct CudaBackendOptions {
  int max_requests = 1;
  std::int64_t max_context = 4096;
  bool cuda_graph = true;           // capture and replay the decode step
  // Launch the projections with programmatic dependent launch (kernels/programmatic_launch.cuh).
  // Process-wide: the backend built last decides, for every backend of the process.
  bool programmatic_launch = true;
  // Decode one request's dense step as one persistent kernel (kernels/persistent_decode.cuh) where
  // the model and device allow it, instead of the kernel chain. Off by default: on an H100 it is
  // 4-5% slower than the chain (bench/README, "One request's step as one persistent kernel").
  bool persistent_decode = false;
  std::int64_t prefill_chunk = 1024;  // prompt tokens per prefill pass
  double memory_limit_bytes = 0;    // 0: what the device has free
  // The decode steps' KV selection (engine/cuda_sparse_decode.cuh); prefill stays dense.
  SelectionPolicy policy = SelectionPolicy::Full;
  std::int64_t budget = 0;             // positions per KV head for a sparse policy (t is always added)
  const Eagle3Draft* draft = nullptr;  // specontext*: the retrieval head's draft (copied to the GPU)
  HeadInput head_input = HeadInput::Eagle;  // what feeds the head's attention (engine/retrieval_head.hpp)
  ScorePooling head_pooling;                // of the head's scores before top-B (kernels/reference/score_pool.hpp)
  bool track_selections = false;       // download each step's selections for overlap_rate() (a sync per step)
  // Measure the attention mass each step's sets capture in the GPU-resident layers (attention_mass();
  // a dense score pass per layer and a sync per step: for evaluations, not benchmarks).
  bool measure_attention_mass = false;
  // Benchmarks with random weights (specontext): these lists replace the head's each step, after the
  // head and top-B ran. Must outlive the backend; one step per decode call.
  const SyntheticSelectionStream* synthetic_selection = nullptr;
  // The last `offload_layers` layers keep their KV in pinned host memory and load only what each
  // step's selection changes (engine/kv_offload.cuh); needs a policy with one set per step
  // (streaming, specontext, specontext-batch).
  int offload_layers = 0;
  bool async_prefetch = true;  // c1+c2: gathers on a copy stream overlap the forward; false: c1 (synchronous)
  // Offloaded layers per gather and event, and the gather's grid cap. H200, Llama-3.1-8B shape, R = 32,
  // 32K, 8 layers offloaded, 430 MB per step (bench/README.md): groups of 1 (512 B rows) with 16
  // blocks 25.9 ms/step; groups of 4 (2 KiB rows) with 32 blocks 11.6; groups of 8 with 32 / 64 blocks
  // 12.3 / 12.7.
  int prefetch_group = 4;
  int gather_blocks = 32;
  // How the offloaded layers' host KV is pinned: cudaHostAlloc's base pages, or a mapping advised onto
  // transparent huge pages and registered (engine/pinned_host_buffer.cuh says why it may gather faster).
  HostPages host_pages = HostPages::Cuda;
  // c3, the adaptive memory manager (PAPER.md §4): GPU-resident layers' caches start small and grow
  // with the context; as it crosses the memory model's thresholds (sim/memory_model.hpp, CR Alg. 1,
  // for memory_limit_bytes or the device's memory) the last resident layer moves to host memory, and
  // a growth that would pass the limit moves one first. offload_layers is then the most that may move
  // (0: what the memory model offloads at max_context).
  bool adaptive_placement = false;
  // Time each decode step's phases with CUDA events (engine/phase_timer.cuh); launches kernel by
  // kernel (no CUDA graph), so the steps are slower than unprofiled ones.
  bool profile_steps = false;
  double placement_memory_bytes = 0;   // the memory model's Mem_GPU (0: memory_limit_bytes or the device's)
  std::int64_t initial_capacity = 0;   // c3: positions the resident caches start with (0: min(max_context, 4096))
};

struct CudaMemoryPlan {
  double weights = 0, kv_cache = 0, activations = 0, workspace = 0;
  double sparse = 0;   // selection buffers and the retrieval head
  double offload = 0;  // slot buffers, plan tables and the prefill staging of offloaded layers
  std::int64_t initial_capacity = 0;  // positions per resident layer's cache at the start
  double host = 0;     // pinned host memory of offloaded layers' KV (not in total())
  double total() const { return weights + kv_cache + activations + workspace + sparse + offload; }
};

class CudaBackend final : public Backend {
 public:
  // Weights from a checkpoint (converted to bf16 on the way up).
  CudaBackend(const ModelConfig& config, const ModelWeights& weights, const CudaBackendOptions& options);
  // Seeded random weights made on the GPU: the real shapes of models we have no weights for.
  CudaBackend(const ModelConfig& config, std::uint64_t seed, const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::int64_t vocab() const override;
  // Empty when one request's decode step runs as the persistent kernel (kernels/persistent_decode.cuh),
  // else why it runs as the kernel chain.
  std::string persistent_decode_refusal() const;
  std::int64_t max_requests() const override;
  std::int64_t max_context() const override;
  void reset(int request) override;
  std::vector<float> prefill(int request, const std::vector<int>& tokens) override;
  std::vector<float> decode(const std::vector<int>& requests, const std::vector<int>& tokens) override;
  std::vector<int> decode_sample(const std::vector<int>& requests, const std::vector<int>& tokens, const SamplingParams& sampling,
                                 std::int64_t step) override;
  std::int64_t length(int request) const override;
  // With track_selections, the overlap of adjacent steps' selections (engine/overlap_meter.hpp).
  std::optional<double> overlap_rate() const override;
  // With measure_attention_mass and a sparse policy, the attention mass captured so far.
  const AttentionMassMeter* attention_mass() const override;
  // With track_selections, request r's selections of its last decode step (one, or one per layer for the oracle).
  const std::vector<TokenSelection>& last_selections(int request) const;

  // Recording (engine/trace_recorder.hpp), as CpuBackend has them, for policy full with every layer
  // resident: the residual streams entering `layers` kept on the host (features(request): the rows of
  // its last prefill or decode, [positions][layers x hidden], fp32); and one dense decode step of one request
  // that shows `probe` each layer's attention, keys and query, downloaded layer by layer. Both run
  // kernel by kernel (no CUDA graph): slow, for recording only.
  void set_feature_layers(std::vector<int> layers);
  const std::vector<float>& features(int request) const;
  std::int64_t feature_width() const;
  std::vector<float> decode_probed(int request, int token, AttentionProbe& probe);
  const ModelConfig& config() const;

  // Benchmarks: request r's context becomes `length` tokens of random K and V in every layer.
  void fill_random_context(int request, std::int64_t length, std::uint64_t seed);
  // Bytes the offloaded layers' elastic loads moved host-to-device since the last call (0 without
  // offloading); synchronises the stream.
  double take_h2d_bytes();
  // Layers whose KV lives in host memory now, and the positions each resident layer's cache holds.
  int offloaded_layers() const;
  // Bytes of the offloaded layers' host KV backed by transparent huge pages (HostPages::Huge; 0 otherwise).
  double host_huge_page_bytes() const;
  // Device bytes this backend holds now: what was free when it was built less what is free (so
  // anything else allocating on the device meanwhile counts too). --gpu-mem's check in benchmarks.
  double device_bytes_in_use() const;
  std::int64_t cache_capacity() const;
  // With profile_steps: the phases of the decode steps since the last call, summed, and their count.
  StepProfile take_step_profile();
  // The engine's memory model (sim/memory_model.hpp for these options; Mem_GPU from
  // placement_memory_bytes, memory_limit_bytes or `device_bytes`): layers it offloads at `length`
  // positions (CR Alg. 1), or -1 where no placement fits.
  static int memory_model_offload(const ModelConfig& config, const CudaBackendOptions& options, double device_bytes, std::int64_t length);
  // c3: layers the memory model offloads at `length` positions (CR Alg. 1); 0 without c3.
  int planned_offload(std::int64_t length) const;
  // Bytes of weights the decode step streams (all but the embedding table) and of KV cache
  // one token adds over all layers: the roofline's numerator.
  double streamed_weight_bytes() const;
  double kv_bytes_per_token() const;

  // `device_bytes` (the device's memory) feeds the adaptive placement's memory model when no limit is set.
  static CudaMemoryPlan memory_plan(const ModelConfig& config, const CudaBackendOptions& options, double device_bytes);

  struct Impl;  // defined in cuda_backend.cu, opaque to everyone else

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace specontext
