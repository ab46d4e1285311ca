#include "engine/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda_device_array.cuh"
#include "engine/cuda_gemm.cuh"
#include "engine/cuda_sparse_decode.cuh"
#include "kernels/reference/bf16.hpp"
#include "engine/kv_offload.cuh"
#include "engine/nvtx.hpp"
#include "engine/overlap_meter.hpp"
#include "engine/phase_timer.cuh"
#include "engine/rope.hpp"
#include "engine/sampling.hpp"
#include "sim/memory_model.hpp"
#include "kernels/add_bias.cuh"
#include "kernels/add_rmsnorm.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/decode_attention.cuh"
#include "kernels/embedding.cuh"
#include "kernels/fill_random.cuh"
#include "kernels/head_rmsnorm.cuh"
#include "kernels/persistent_decode.cuh"
#include "kernels/prefill_attention.cuh"
#include "kernels/programmatic_launch.cuh"
#include "kernels/rope_kv_append.cuh"
#include "kernels/sample.cuh"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

// Row-concatenation of matrices with the same column count ([rows_a + rows_b, cols]).
std::vector<float> stack_rows(std::initializer_list<const Matrix*> parts) {
  std::vector<float> out;
  for (const Matrix* m : parts) out.insert(out.end(), m->data.begin(), m->data.end());
  return out;
}

struct LayerDevice {
  DeviceArray<bf16_bits> input_norm, post_norm;
  DeviceArray<bf16_bits> wqkv;  // [(q_heads + 2 kv_heads) * head_dim, hidden]
  DeviceArray<bf16_bits> qkv_bias;  // Qwen2, else empty
  DeviceArray<bf16_bits> q_norm, k_norm;  // Qwen3, else empty
  DeviceArray<bf16_bits> wo;       // [hidden, q_heads * head_dim]
  DeviceArray<bf16_bits> wgate_up; // [2 ffn, hidden]
  DeviceArray<bf16_bits> wdown;    // [hidden, ffn]
  DeviceArray<bf16_bits> k_cache, v_cache;  // [max_requests][kv_heads][capacity][head_dim]
  std::int64_t capacity = 0;                // positions per (request, KV head); 0 once offloaded
};

}  // namespace

CudaSparseShape sparse_shape(const ModelConfig& c, const CudaBackendOptions& o) {
  CudaSparseShape s;
  s.max_requests = o.max_requests;
  s.q_heads = static_cast<int>(c.shape.q_heads);
  s.kv_heads = static_cast<int>(c.shape.kv_heads);
  s.head_dim = static_cast<int>(c.shape.head_dim);
  s.layers = static_cast<int>(c.shape.layers);
  s.max_context = o.max_context;
  s.max_rows = std::max<std::int64_t>(o.max_requests, o.prefill_chunk);
  s.hidden = c.shape.hidden;
  return s;
}

// The paper's memory model for this engine's configuration (c3): Mem_GPU is the limit, or the
// device's memory; M_D the retrieval head's weights.
MemoryModel engine_memory_model(const ModelConfig& c, const CudaBackendOptions& o, double device_bytes) {
  MemoryModelInputs in;
  in.gpu_memory_bytes = o.placement_memory_bytes > 0 ? o.placement_memory_bytes : o.memory_limit_bytes > 0 ? o.memory_limit_bytes : device_bytes;
  in.model_bytes = c.shape.weight_bytes();
  if (o.draft) in.draft_bytes = draft_bytes(o.draft->config.layer.shape, DraftPart::HeadEagleInput);
  in.layers = c.shape.layers;
  in.alpha = static_cast<double>(c.shape.q_heads / c.shape.kv_heads);
  in.requests = o.max_requests;
  in.budget = std::min(o.budget, o.max_context);
  in.kv_bytes_per_token_layer = 2.0 * 2.0 * static_cast<double>(c.shape.kv_heads * c.shape.head_dim);
  return MemoryModel(in);
}

// Layers the engine may hold in host memory: a fixed count, or under c3 at most what the memory model
// offloads at max_context (or the count given).
int max_offloaded(const ModelConfig& c, const CudaBackendOptions& o, double device_bytes) {
  if (!o.adaptive_placement || o.offload_layers > 0) return o.offload_layers;
  const MemoryModel m = engine_memory_model(c, o, device_bytes);
  return static_cast<int>(std::min<long long>(m.cpu_layers_at(o.max_context), c.shape.layers));
}

// Positions the resident caches hold at first: all of max_context, or under c3 a start that grows.
std::int64_t initial_capacity(const CudaBackendOptions& o) {
  if (!o.adaptive_placement) return o.max_context;
  return std::min<std::int64_t>(o.max_context, o.initial_capacity > 0 ? o.initial_capacity : 4096);
}

// Under c3, the layers on the host from the start: what the memory model offloads at the initial
// capacity. A run that starts deep (bench --adaptive at 32K) so begins with the placement the engine
// would have reached by growing, instead of a first plan with every layer resident at that depth.
int initially_offloaded(const ModelConfig& c, const CudaBackendOptions& o, double device_bytes, int offloaded) {
  if (!o.adaptive_placement || offloaded == 0) return 0;
  const MemoryModel m = engine_memory_model(c, o, device_bytes);
  return static_cast<int>(std::min<long long>(m.cpu_layers_at(initial_capacity(o)), offloaded));
}

KvOffloadShape offload_shape(const ModelConfig& c, const CudaBackendOptions& o, double device_bytes) {
  KvOffloadShape s;
  s.layers = static_cast<int>(c.shape.layers);
  s.offloaded = max_offloaded(c, o, device_bytes);
  s.initially_active = o.adaptive_placement ? initially_offloaded(c, o, device_bytes, s.offloaded) : -1;
  s.max_requests = o.max_requests;
  s.kv_heads = static_cast<int>(c.shape.kv_heads);
  s.head_dim = static_cast<int>(c.shape.head_dim);
  s.max_context = o.max_context;
  s.budget = std::min(o.budget, o.max_context);
  s.prefetch_group = o.prefetch_group;
  s.asynchronous = o.async_prefetch;
  s.gather_blocks = o.gather_blocks;
  s.host_pages = o.host_pages;
  s.max_rows = std::max<std::int64_t>(o.max_requests, o.prefill_chunk);
  return s;
}

// The offloaded layers that hold no GPU cache from the start: all of them, or under c3 those the
// placement begins with (the others move when the context grows).
int host_layers_at_start(const CudaBackendOptions& o, const KvOffloadShape& off) {
  if (off.offloaded == 0) return 0;
  return o.adaptive_placement ? off.initially_active : off.offloaded;
}

struct CudaBackend::Impl {
  ModelConfig config;
  CudaBackendOptions options;
  std::int64_t hidden = 0, q_dim = 0, kv_dim = 0, qkv_dim = 0, ffn = 0, vocab = 0, head_dim = 0;
  std::int64_t max_rows = 0;  // rows one forward pass holds (decode batch or prefill chunk)

  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  CudaGemm gemm;  // on `stream`, through `cublas`
  DeviceArray<std::uint8_t> cublas_workspace;

  DeviceArray<bf16_bits> embed, final_norm, lm_head;  // lm_head empty when tied
  std::vector<LayerDevice> layers;
  DeviceArray<float> inv_freq;
  float attention_factor = 1.0f;

  // activations, sized for max_rows
  DeviceArray<float> residual;
  DeviceArray<bf16_bits> x_bf16, qkv, attn_out, proj_out, gate_up, act;
  DeviceArray<float> logits;  // [max_requests or 1, vocab]
  DeviceArray<std::int32_t> ids, slots, positions, lengths, sampled;
  DeviceArray<float> uniforms;
  DeviceArray<std::uint8_t> attention_workspace;

  std::vector<std::int64_t> lengths_host;
  std::map<int, cudaGraphExec_t> decode_graphs;  // by batch size
  // The one-request step as one kernel: why this model, device or option set does not allow it
  // (empty when they do), its per-layer table (uploaded again whenever cache pointers change) and
  // its workspace.
  std::string persistent_refusal;
  DeviceArray<kernels::PersistentDecodeLayer> persistent_layers;
  DeviceArray<std::uint8_t> persistent_workspace;
  // Diagnostics (SPECONTEXT_PERSISTENT_TIMELINE=FILE): the kernel's phase clock, the last step's
  // per-phase means over the layers appended to FILE when the backend goes.
  DeviceArray<std::uint64_t> persistent_timeline;
  std::string persistent_timeline_file;

  std::unique_ptr<CudaSparseDecode> sparse;  // a sparse policy's selection, else null (dense)
  std::unique_ptr<KvOffload> offload;        // offloaded layers' KV in host memory, else null
  std::optional<MemoryModel> placement;      // c3: when layers move to host memory
  double device_bytes = 0, baseline_free = 0;  // the device's memory, and what was free before we allocated
  OverlapMeter overlap;
  AttentionMassMeter mass;
  // Recording (engine/trace_recorder.hpp): the residual streams entering these layers, kept on the
  // host per request and position; the rows of the forward under way (request, position); the probe
  // of a decode_probed step and its device buffers.
  std::vector<int> feature_layers;
  std::vector<std::vector<float>> host_features;  // per request: the rows of its last prefill or decode, as CpuBackend
  std::vector<std::int64_t> feature_base;         // per request: the first position of that call
  std::vector<int> row_requests;
  std::vector<std::int64_t> row_positions;
  AttentionProbe* probe = nullptr;
  DeviceArray<float> probe_scores;
  DeviceArray<std::uint8_t> probe_workspace;
  std::unique_ptr<PhaseTimer> timer;  // profile_steps
  StepProfile profile;

  Impl(const ModelConfig& c, const CudaBackendOptions& o) : config(c), options(o), overlap(o.max_requests) {
    kernels::set_programmatic_launch(o.programmatic_launch);
    std::size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) device_bytes = static_cast<double>(total_b), baseline_free = static_cast<double>(free_b);
    const ModelShape& m = c.shape;
    hidden = m.hidden;
    head_dim = m.head_dim;
    q_dim = m.q_heads * m.head_dim;
    kv_dim = m.kv_heads * m.head_dim;
    qkv_dim = q_dim + 2 * kv_dim;
    ffn = m.ffn;
    vocab = m.vocab;
    max_rows = std::max<std::int64_t>(o.max_requests, o.prefill_chunk);
    lengths_host.assign(static_cast<std::size_t>(o.max_requests), 0);
    host_features.assign(static_cast<std::size_t>(o.max_requests), {});
    feature_base.assign(static_cast<std::size_t>(o.max_requests), 0);
  }
  ~Impl() {
    write_persistent_timeline();
    for (auto& [_, g] : decode_graphs) cudaGraphExecDestroy(g);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }

  void check_fits() const {
    const CudaMemoryPlan plan = CudaBackend::memory_plan(config, options, device_bytes);
    std::size_t free_b = 0, total_b = 0;
    SPECONTEXT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const double limit = options.memory_limit_bytes > 0 ? std::min<double>(options.memory_limit_bytes, static_cast<double>(free_b))
                                                        : static_cast<double>(free_b);
    if (plan.total() > limit)
      throw ConfigError("--requests/--max-context", "",
                        "the plan does not fit in GPU memory: weights " + std::to_string(plan.weights / 1e9) + " GB + KV cache " +
                            std::to_string(plan.kv_cache / 1e9) + " GB + activations and workspaces " +
                            std::to_string((plan.activations + plan.workspace) / 1e9) + " GB + sparse selection " +
                            std::to_string(plan.sparse / 1e9) + " GB > " + std::to_string(limit / 1e9) +
                            " GB available");
  }

  void allocate_runtime() {
    SPECONTEXT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    SPECONTEXT_CUBLAS_CHECK(cublasCreate(&cublas));
    SPECONTEXT_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    gemm = CudaGemm{cublas, stream};
    // A fixed workspace so that cuBLAS allocates nothing while a CUDA graph is captured.
    cublas_workspace = DeviceArray<std::uint8_t>(32u << 20);
    SPECONTEXT_CUBLAS_CHECK(cublasSetWorkspace(cublas, cublas_workspace.ptr, cublas_workspace.count));
    const auto rows = static_cast<std::size_t>(max_rows);
    residual = DeviceArray<float>(rows * hidden);
    x_bf16 = DeviceArray<bf16_bits>(rows * hidden);
    qkv = DeviceArray<bf16_bits>(rows * qkv_dim);
    attn_out = DeviceArray<bf16_bits>(rows * q_dim);
    proj_out = DeviceArray<bf16_bits>(rows * hidden);
    gate_up = DeviceArray<bf16_bits>(rows * 2 * ffn);
    act = DeviceArray<bf16_bits>(rows * ffn);
    logits = DeviceArray<float>(static_cast<std::size_t>(options.max_requests) * vocab);
    ids = DeviceArray<std::int32_t>(rows);
    slots = DeviceArray<std::int32_t>(rows);
    positions = DeviceArray<std::int32_t>(rows);
    lengths = DeviceArray<std::int32_t>(rows);
    sampled = DeviceArray<std::int32_t>(static_cast<std::size_t>(options.max_requests));
    uniforms = DeviceArray<float>(static_cast<std::size_t>(options.max_requests));
    attention_workspace = DeviceArray<std::uint8_t>(kernels::decode_attention_workspace_bytes(
        options.max_requests, static_cast<int>(config.shape.q_heads), static_cast<int>(head_dim), options.max_context));
    const std::vector<float> freqs = rope_inverse_frequencies(config);
    inv_freq = DeviceArray<float>(freqs.size());
    inv_freq.upload(freqs);
    attention_factor = rope_attention_factor(config);
    const KvOffloadShape off = offload_shape(config, options, device_bytes);
    const std::int64_t capacity = initial_capacity(options);
    const std::size_t cache = static_cast<std::size_t>(options.max_requests) * kv_dim * static_cast<std::size_t>(capacity);
    const std::size_t resident = layers.size() - static_cast<std::size_t>(host_layers_at_start(options, off));
    for (std::size_t l = 0; l < resident; ++l) {
      layers[l].k_cache = DeviceArray<bf16_bits>(cache);
      layers[l].v_cache = DeviceArray<bf16_bits>(cache);
      layers[l].capacity = capacity;
    }
    if (off.offloaded > 0) offload = std::make_unique<KvOffload>(off);
    if (options.adaptive_placement) placement = engine_memory_model(config, options, device_bytes);
    if (options.policy != SelectionPolicy::Full)
      sparse = std::make_unique<CudaSparseDecode>(options.policy, options.budget, options.draft, embed.ptr, sparse_shape(config, options), gemm,
                                                  options.synthetic_selection, options.head_input, options.head_pooling);
    if (sparse && options.measure_attention_mass) sparse->enable_attention_mass();
    if (options.profile_steps) {  // after the sparse path exists, so that it marks its phases too
      timer = std::make_unique<PhaseTimer>();
      if (sparse) sparse->set_timer(timer.get());
      if (offload) offload->set_timer(timer.get());
    }
    // The uploads (a cudaMemcpy from pageable memory may return before its DMA lands) and the
    // cudaMemsets of KvOffload and CudaSparseDecode ran on the legacy stream, which `stream`
    // (cudaStreamNonBlocking) does not wait for: they finish before the first forward.
    SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  }

  const bf16_bits* output_matrix() const { return lm_head.ptr ? lm_head.ptr : embed.ptr; }

  void write_persistent_timeline() const {
    if (persistent_timeline_file.empty() || persistent_timeline.count == 0 || cudaStreamSynchronize(stream) != cudaSuccess) return;
    std::vector<std::uint64_t> t(persistent_timeline.count);
    if (cudaMemcpy(t.data(), persistent_timeline.ptr, t.size() * sizeof(std::uint64_t), cudaMemcpyDeviceToHost) != cudaSuccess || t[0] == 0) return;
    const int per = kernels::kTimelineMarksPerLayer, n = static_cast<int>(layers.size());
    std::FILE* f = std::fopen(persistent_timeline_file.c_str(), "a");
    if (!f) return;
    std::fprintf(f, "length %lld: step %.2f us, embedding %.2f us, final norm + LM head %.2f us; per layer (mean us):",
                 static_cast<long long>(lengths_host[0]), (t.back() - t[0]) / 1e3, (t[1] - t[0]) / 1e3, (t.back() - t[t.size() - 2]) / 1e3);
    for (int e = 0; e < per; ++e) {
      double sum = 0;
      for (int l = 0; l < n; ++l) sum += static_cast<double>(t[2 + l * per + e] - t[1 + l * per + e]);
      std::fprintf(f, " %.2f", sum / n / 1e3);
    }
    std::fprintf(f, "\n");
    std::fclose(f);
  }
};


namespace {

void setup_persistent_decode(CudaBackend::Impl& I);  // after the weights and buffers exist

void require_request(int request, std::int64_t max_requests, const char* where) {
  if (request < 0 || request >= max_requests)
    throw std::invalid_argument(std::string(where) + ": request " + std::to_string(request) + " is not in [0, " + std::to_string(max_requests) + ")");
}

}  // namespace

// ---- construction ------------------------------------------------------------------------

CudaMemoryPlan CudaBackend::memory_plan(const ModelConfig& c, const CudaBackendOptions& o, double device_bytes) {
  const ModelShape& m = c.shape;
  CudaMemoryPlan p;
  p.weights = m.weight_bytes();
  const KvOffloadShape off = offload_shape(c, o, device_bytes);
  p.initial_capacity = initial_capacity(o);
  p.kv_cache = 2.0 * 2.0 * static_cast<double>(m.layers - host_layers_at_start(o, off)) * o.max_requests * static_cast<double>(m.kv_heads * m.head_dim) *
               static_cast<double>(p.initial_capacity);
  const double rows = static_cast<double>(std::max<std::int64_t>(o.max_requests, o.prefill_chunk));
  const double q = static_cast<double>(m.q_heads * m.head_dim), kv = static_cast<double>(m.kv_heads * m.head_dim);
  p.activations = rows * (4.0 * m.hidden + 2.0 * (m.hidden + (q + 2 * kv) + q + m.hidden + 3.0 * m.ffn)) +
                  static_cast<double>(o.max_requests) * m.vocab * 4.0;
  p.workspace = static_cast<double>(kernels::decode_attention_workspace_bytes(o.max_requests, static_cast<int>(m.q_heads),
                                                                              static_cast<int>(m.head_dim), static_cast<int>(o.max_context))) +
                (32u << 20);
  if (off.offloaded > 0) {
    p.offload = KvOffload::device_bytes(off);
    p.host = KvOffload::host_bytes(off);
  }
  p.sparse = CudaSparseDecode::device_bytes(o.policy, o.budget, o.draft ? &o.draft->config : nullptr, sparse_shape(c, o), o.head_pooling);
  return p;
}

static void check_options(const ModelConfig& c, const CudaBackendOptions& o) {
  if (o.max_requests <= 0) throw ConfigError("--requests", "", "must be positive");
  if (o.max_context <= 0) throw ConfigError("--max-context", "", "must be positive");
  if (c.shape.max_positions > 0 && o.max_context > c.shape.max_positions)
    throw ConfigError(c.origin, "max_position_embeddings",
                      "a context of " + std::to_string(o.max_context) + " tokens is longer than the model supports (" +
                          std::to_string(c.shape.max_positions) + ")");
  if (o.max_context > 0x7fffffff) throw ConfigError("--max-context", "", "must fit in 32 bits");
  const long long d = c.shape.head_dim;
  if (d != 32 && d != 64 && d != 128) throw ConfigError(c.origin, "head_dim", "the CUDA kernels support head_dim 32, 64 and 128, not " + std::to_string(d));
  if (o.policy != SelectionPolicy::Full && o.budget < 1)
    throw ConfigError("--budget", "", std::string("policy ") + to_string(o.policy) + " needs a budget of at least 1");
  if (needs_retrieval_head(o.policy) && o.draft == nullptr)
    throw ConfigError("--dlm", "", std::string("policy ") + to_string(o.policy) + " needs the distilled LM of the retrieval head");
  if (o.offload_layers < 0 || o.offload_layers > c.shape.layers)
    throw ConfigError("--offload-layers", "", "must be in 0.." + std::to_string(c.shape.layers) + ", got " + std::to_string(o.offload_layers));
  if (o.offload_layers > 0 || o.adaptive_placement) require_offloadable(o.policy, "--offload-layers");
  if (!needs_retrieval_head(o.policy) && o.draft != nullptr)
    throw ConfigError("--dlm", "", std::string("the distilled LM is used by policies specontext and specontext-batch only, not ") + to_string(o.policy));
}

CudaBackend::CudaBackend(const ModelConfig& config, const ModelWeights& w, const CudaBackendOptions& options)
    : impl_(std::make_unique<Impl>(config, options)) {
  check_options(config, options);
  Impl& I = *impl_;
  I.check_fits();
  I.embed = upload_bf16(w.embed.data);
  I.final_norm = upload_bf16(w.final_norm);
  if (!w.lm_head.data.empty()) I.lm_head = upload_bf16(w.lm_head.data);
  I.layers.resize(w.layers.size());
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& src = w.layers[l];
    LayerDevice& L = I.layers[l];
    L.input_norm = upload_bf16(src.input_norm);
    L.post_norm = upload_bf16(src.post_attention_norm);
    L.wqkv = upload_bf16(stack_rows({&src.q, &src.k, &src.v}));
    if (!src.q_bias.empty()) {
      std::vector<float> bias = src.q_bias;
      bias.insert(bias.end(), src.k_bias.begin(), src.k_bias.end());
      bias.insert(bias.end(), src.v_bias.begin(), src.v_bias.end());
      L.qkv_bias = upload_bf16(bias);
    }
    if (!src.q_norm.empty()) {
      L.q_norm = upload_bf16(src.q_norm);
      L.k_norm = upload_bf16(src.k_norm);
    }
    L.wo = upload_bf16(src.o.data);
    L.wgate_up = upload_bf16(stack_rows({&src.gate, &src.up}));
    L.wdown = upload_bf16(src.down.data);
  }
  I.allocate_runtime();
  setup_persistent_decode(I);
}

CudaBackend::CudaBackend(const ModelConfig& config, std::uint64_t seed, const CudaBackendOptions& options)
    : impl_(std::make_unique<Impl>(config, options)) {
  check_options(config, options);
  Impl& I = *impl_;
  I.check_fits();
  const ModelShape& m = config.shape;
  std::uint64_t stream_id = 0;
  // Matrices N(0, 0.02) and norms N(1, 0.02), each tensor its own seeded stream.
  auto fill = [&](std::size_t count, float mean) {
    DeviceArray<bf16_bits> d(count);
    kernels::launch_fill_random({d.ptr, static_cast<std::int64_t>(count), seed * 1000003u + stream_id++, mean, 0.02f}, nullptr);
    return d;
  };
  const auto h = static_cast<std::size_t>(m.hidden);
  I.embed = fill(static_cast<std::size_t>(m.vocab) * h, 0.0f);
  I.final_norm = fill(h, 1.0f);
  if (!m.tied_embeddings) I.lm_head = fill(static_cast<std::size_t>(m.vocab) * h, 0.0f);
  I.layers.resize(static_cast<std::size_t>(m.layers));
  for (auto& L : I.layers) {
    L.input_norm = fill(h, 1.0f);
    L.post_norm = fill(h, 1.0f);
    L.wqkv = fill(static_cast<std::size_t>(I.qkv_dim) * h, 0.0f);
    if (m.attention_bias) L.qkv_bias = fill(static_cast<std::size_t>(I.qkv_dim), 0.0f);
    if (m.qk_norm) {
      L.q_norm = fill(static_cast<std::size_t>(m.head_dim), 1.0f);
      L.k_norm = fill(static_cast<std::size_t>(m.head_dim), 1.0f);
    }
    L.wo = fill(h * static_cast<std::size_t>(I.q_dim), 0.0f);
    L.wgate_up = fill(2 * static_cast<std::size_t>(I.ffn) * h, 0.0f);
    L.wdown = fill(h * static_cast<std::size_t>(I.ffn), 0.0f);
  }
  SPECONTEXT_CUDA_CHECK(cudaDeviceSynchronize());
  I.allocate_runtime();
  setup_persistent_decode(I);
}

CudaBackend::~CudaBackend() = default;

std::int64_t CudaBackend::vocab() const { return impl_->vocab; }
std::string CudaBackend::persistent_decode_refusal() const { return impl_->persistent_refusal; }
std::int64_t CudaBackend::max_requests() const { return impl_->options.max_requests; }
std::int64_t CudaBackend::max_context() const { return impl_->options.max_context; }
std::int64_t CudaBackend::length(int request) const {
  require_request(request, impl_->options.max_requests, "length");
  return impl_->lengths_host[static_cast<std::size_t>(request)];
}
void CudaBackend::reset(int request) {
  require_request(request, impl_->options.max_requests, "reset");
  impl_->lengths_host[static_cast<std::size_t>(request)] = 0;
  impl_->overlap.reset(request);
  if (impl_->offload) impl_->offload->reset_request(request, impl_->stream);
  if (impl_->sparse) impl_->sparse->reset_request(request, impl_->stream);
  impl_->host_features[static_cast<std::size_t>(request)].clear();
}
StepProfile CudaBackend::take_step_profile() {
  StepProfile p = impl_->profile;
  impl_->profile = StepProfile{};
  return p;
}

double CudaBackend::take_h2d_bytes() {
  if (!impl_->offload) return 0;
  return impl_->offload->take_loaded_bytes(impl_->stream);
}
std::optional<double> CudaBackend::overlap_rate() const { return impl_->overlap.rate(); }
const AttentionMassMeter* CudaBackend::attention_mass() const {
  return impl_->sparse && impl_->options.measure_attention_mass ? &impl_->mass : nullptr;
}
const std::vector<TokenSelection>& CudaBackend::last_selections(int request) const {
  require_request(request, impl_->options.max_requests, "last_selections");
  return impl_->overlap.last(request);
}
double CudaBackend::streamed_weight_bytes() const { return impl_->config.shape.streamed_weight_bytes(); }
double CudaBackend::kv_bytes_per_token() const {
  return 2.0 * 2.0 * static_cast<double>(impl_->config.shape.layers * impl_->kv_dim);
}

namespace {

void upload_persistent_layers(CudaBackend::Impl& I);  // below, with the persistent kernel's setup

// Every captured graph bakes in cache pointers and strides, as does the persistent kernel's layer
// table; a placement change (called after the caches moved) drops the first and rewrites the second.
void drop_graphs(CudaBackend::Impl& I) {
  for (auto& [_, g] : I.decode_graphs) cudaGraphExecDestroy(g);
  I.decode_graphs.clear();
  upload_persistent_layers(I);
}

// The persistent kernel's parameters for this backend's buffers (one request: row 0 of each).
kernels::PersistentDecodeParams persistent_params(const CudaBackend::Impl& I) {
  const ModelShape& m = I.config.shape;
  kernels::PersistentDecodeParams p;
  p.layers = I.persistent_layers.ptr;
  p.layer_count = static_cast<int>(I.layers.size());
  p.embed = I.embed.ptr;
  p.final_norm = I.final_norm.ptr;
  p.lm_head = I.output_matrix();
  p.ids = I.ids.ptr;
  p.slots = I.slots.ptr;
  p.positions = I.positions.ptr;
  p.lengths = I.lengths.ptr;
  p.inv_freq = I.inv_freq.ptr;
  p.attention_factor = I.attention_factor;
  p.eps = static_cast<float>(I.config.rms_norm_eps);
  p.scale = 1.0f / std::sqrt(static_cast<float>(I.head_dim));
  p.hidden = static_cast<int>(I.hidden);
  p.q_heads = static_cast<int>(m.q_heads);
  p.kv_heads = static_cast<int>(m.kv_heads);
  p.head_dim = static_cast<int>(I.head_dim);
  p.ffn = static_cast<int>(I.ffn);
  p.vocab = static_cast<int>(I.vocab);
  p.residual = I.residual.ptr;
  p.qkv = I.qkv.ptr;
  p.attn_out = I.attn_out.ptr;
  p.act = I.act.ptr;
  p.logits = I.logits.ptr;
  p.workspace = I.persistent_workspace.ptr;
  p.workspace_bytes = I.persistent_workspace.count;
  p.timeline = I.persistent_timeline.ptr;
  return p;
}

// Whether the backend's options and model let one request's step run as the persistent kernel;
// the reason when not (checked once, at construction).
std::string persistent_refusal_reason(const CudaBackend::Impl& I) {
  const CudaBackendOptions& o = I.options;
  if (!o.persistent_decode) return "off (CudaBackendOptions::persistent_decode)";
  if (o.policy != SelectionPolicy::Full || I.offload) return "sparse attention and offloaded layers run the kernel chain";
  if (o.profile_steps) return "--profile-steps times the kernel chain's phases";
  for (const LayerDevice& L : I.layers)
    if (L.qkv_bias.ptr || L.q_norm.ptr) return "QKV bias and q/k norms are not in the persistent kernel";
  const char* why = kernels::persistent_decode_unsupported(persistent_params(I));
  return why ? why : "";
}

void setup_persistent_decode(CudaBackend::Impl& I) {
  I.persistent_refusal = persistent_refusal_reason(I);
  if (!I.persistent_refusal.empty()) return;
  I.persistent_workspace = DeviceArray<std::uint8_t>(kernels::persistent_decode_workspace_bytes(
      static_cast<int>(I.config.shape.q_heads), static_cast<int>(I.config.shape.kv_heads), static_cast<int>(I.head_dim)));
  I.persistent_layers = DeviceArray<kernels::PersistentDecodeLayer>(I.layers.size());
  upload_persistent_layers(I);
  if (const char* file = std::getenv("SPECONTEXT_PERSISTENT_TIMELINE")) {
    I.persistent_timeline_file = file;
    I.persistent_timeline = DeviceArray<std::uint64_t>(static_cast<std::size_t>(kernels::persistent_decode_timeline_marks(static_cast<int>(I.layers.size()))));
    SPECONTEXT_CUDA_CHECK(cudaMemset(I.persistent_timeline.ptr, 0, I.persistent_timeline.count * sizeof(std::uint64_t)));
  }
}

// Whether this step runs as the persistent kernel: one request, and nothing that reads the
// layers' intermediate results on the host (an attention probe, recorded features).
bool use_persistent(const CudaBackend::Impl& I, int rows) {
  return rows == 1 && I.persistent_refusal.empty() && !I.probe && I.feature_layers.empty();
}

// The layer table the persistent kernel reads: at setup and after every placement change (both
// outside any capture: the copy is synchronous, after the stream's work that may still read it).
void upload_persistent_layers(CudaBackend::Impl& I) {
  if (I.persistent_layers.count == 0) return;
  std::vector<kernels::PersistentDecodeLayer> table(I.layers.size());
  for (std::size_t l = 0; l < I.layers.size(); ++l) {
    const LayerDevice& L = I.layers[l];
    kernels::PersistentDecodeLayer& t = table[l];
    t.wqkv = L.wqkv.ptr, t.wo = L.wo.ptr, t.wgate_up = L.wgate_up.ptr, t.wdown = L.wdown.ptr;
    t.input_norm = L.input_norm.ptr, t.post_norm = L.post_norm.ptr;
    t.k_cache = L.k_cache.ptr, t.v_cache = L.v_cache.ptr;
    t.kv_request_stride = I.config.shape.kv_heads * L.capacity * I.head_dim;
    t.kv_head_stride = L.capacity * I.head_dim;
  }
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  I.persistent_layers.upload(table);
}

// Bytes this backend holds on the device now (what was free before it allocated, less what is free).
double device_bytes_in_use(const CudaBackend::Impl& I) {
  std::size_t free_b = 0, total_b = 0;
  SPECONTEXT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return I.baseline_free - static_cast<double>(free_b);
}

// c3: the last GPU-resident layer's KV goes to host memory and its cache is freed.
void offload_next_layer(CudaBackend::Impl& I) {
  const int l = I.offload->next_layer();
  LayerDevice& L = I.layers[static_cast<std::size_t>(l)];
  NvtxRange range("offload layer " + std::to_string(l));
  I.offload->activate_next_layer(L.k_cache.ptr, L.v_cache.ptr, L.capacity, I.lengths_host, I.stream);
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  L.k_cache = DeviceArray<bf16_bits>();
  L.v_cache = DeviceArray<bf16_bits>();
  L.capacity = 0;
  drop_graphs(I);
}

// c3 before a step or prefill that needs `needed` positions: first the layers the memory model
// offloads at that length (CR Alg. 1, last layer first), then growth of the resident caches
// (doubling, up to max_context); a growth that would pass the memory limit offloads another layer
// first, and where none is left it is a ConfigError. Without c3 the caches hold max_context already.
void adapt_placement(CudaBackend::Impl& I, std::int64_t needed) {
  if (!I.options.adaptive_placement) return;
  const int target = static_cast<int>(std::min<long long>(I.placement->cpu_layers_at(needed), I.config.shape.layers));
  while (I.offload && I.offload->active() < target && I.offload->next_layer() >= 0) offload_next_layer(I);
  const double limit = I.options.memory_limit_bytes > 0 ? I.options.memory_limit_bytes : I.baseline_free;
  const std::int64_t row_bytes = static_cast<std::int64_t>(I.options.max_requests) * I.kv_dim * 2;  // one position of one layer's K (or V)
  for (;;) {
    std::vector<LayerDevice*> resident;
    for (LayerDevice& L : I.layers)
      if (L.capacity > 0) resident.push_back(&L);
    if (resident.empty() || resident.front()->capacity >= needed) return;
    const std::int64_t from = resident.front()->capacity;
    std::int64_t to = std::min<std::int64_t>(I.options.max_context, std::max<std::int64_t>(needed, 2 * from));
    to = std::min<std::int64_t>(I.options.max_context, (to + 255) / 256 * 256);
    // After the growth, plus one layer's old cache alive while it is copied.
    const double grown = device_bytes_in_use(I) + 2.0 * static_cast<double>(row_bytes) *
                                                      (static_cast<double>(resident.size()) * static_cast<double>(to - from) + static_cast<double>(from));
    if (grown > limit) {
      if (!I.offload || I.offload->next_layer() < 0)
        throw ConfigError("--gpu-mem", "", "growing the KV cache to " + std::to_string(to) + " positions needs " + std::to_string(grown / 1e9) +
                                               " GB, more than the " + std::to_string(limit / 1e9) + " GB limit, and no layer is left to offload");
      offload_next_layer(I);
      continue;
    }
    NvtxRange range("grow KV cache to " + std::to_string(to));
    for (LayerDevice* L : resident)
      for (DeviceArray<bf16_bits>* cache : {&L->k_cache, &L->v_cache}) {
        DeviceArray<bf16_bits> bigger(static_cast<std::size_t>(row_bytes / 2) * static_cast<std::size_t>(to));
        const std::size_t width = static_cast<std::size_t>(from * I.head_dim) * 2, rows = static_cast<std::size_t>(I.options.max_requests * I.config.shape.kv_heads);
        SPECONTEXT_CUDA_CHECK(cudaMemcpy2DAsync(bigger.ptr, static_cast<std::size_t>(to * I.head_dim) * 2, cache->ptr, width, width, rows,
                                                cudaMemcpyDeviceToDevice, I.stream));
        SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
        *cache = std::move(bigger);
      }
    for (LayerDevice* L : resident) L->capacity = to;
    drop_graphs(I);
  }
}

}  // namespace

double CudaBackend::device_bytes_in_use() const { return specontext::device_bytes_in_use(*impl_); }

const ModelConfig& CudaBackend::config() const { return impl_->config; }

// Recording needs the dense step over GPU-resident caches: the probe reads the full K cache.
static void require_recordable(const CudaBackend::Impl& I, const char* where) {
  if (I.options.policy != SelectionPolicy::Full || I.offload || I.options.adaptive_placement)
    throw std::invalid_argument(std::string(where) + ": recording needs policy full with every layer on the GPU");
}

void CudaBackend::set_feature_layers(std::vector<int> layers) {
  require_recordable(*impl_, "set_feature_layers");
  for (int l : layers)
    if (l < 0 || l >= static_cast<int>(impl_->config.shape.layers))
      throw std::invalid_argument("CudaBackend::set_feature_layers: layer " + std::to_string(l) + " is outside the model's layers 0.." +
                                  std::to_string(impl_->config.shape.layers - 1));
  impl_->feature_layers = std::move(layers);
  for (auto& f : impl_->host_features) f.clear();
}

const std::vector<float>& CudaBackend::features(int request) const {
  require_request(request, impl_->options.max_requests, "features");
  return impl_->host_features[static_cast<std::size_t>(request)];
}

std::int64_t CudaBackend::feature_width() const { return static_cast<std::int64_t>(impl_->feature_layers.size()) * impl_->hidden; }

std::vector<float> CudaBackend::decode_probed(int request, int token, AttentionProbe& probe) {
  Impl& I = *impl_;
  require_recordable(I, "decode_probed");
  I.probe = &probe;
  std::vector<float> out;
  try {
    out = decode({request}, {token});
  } catch (...) {
    I.probe = nullptr;
    throw;
  }
  I.probe = nullptr;
  return out;
}

int CudaBackend::offloaded_layers() const { return impl_->offload ? impl_->offload->active() : 0; }
double CudaBackend::host_huge_page_bytes() const {
  return impl_->offload ? static_cast<double>(impl_->offload->host_huge_page_bytes()) : 0.0;
}
int CudaBackend::memory_model_offload(const ModelConfig& config, const CudaBackendOptions& options, double device_bytes, std::int64_t length) {
  const MemoryModel m = engine_memory_model(config, options, device_bytes);
  return m.fits_at(length) ? static_cast<int>(std::min<long long>(m.cpu_layers_at(length), config.shape.layers)) : -1;
}

int CudaBackend::planned_offload(std::int64_t length) const {
  if (!impl_->placement) return 0;
  return static_cast<int>(std::min<long long>(impl_->placement->cpu_layers_at(length), impl_->offload ? impl_->offload->shape().offloaded : 0));
}
std::int64_t CudaBackend::cache_capacity() const {
  for (const LayerDevice& L : impl_->layers)
    if (L.capacity > 0) return L.capacity;
  return 0;
}

void CudaBackend::fill_random_context(int request, std::int64_t length, std::uint64_t seed) {
  Impl& I = *impl_;
  require_request(request, I.options.max_requests, "fill_random_context");
  if (length < 0 || length >= I.options.max_context)
    throw std::invalid_argument("fill_random_context: length " + std::to_string(length) + " leaves no room in a context of " +
                                std::to_string(I.options.max_context));
  adapt_placement(I, length + 1);
  if (I.sparse) I.sparse->reset_request(request, I.stream);  // Quest's page summaries describe the old keys
  std::uint64_t stream_id = 0;
  if (I.offload) I.offload->fill_random(request, length, seed, I.stream);
  for (auto& L : I.layers)
    for (std::int64_t h = 0; L.k_cache.ptr && h < I.config.shape.kv_heads; ++h)
      for (bf16_bits* cache : {L.k_cache.ptr, L.v_cache.ptr}) {
        bf16_bits* base = cache + (static_cast<std::int64_t>(request) * I.config.shape.kv_heads + h) * L.capacity * I.head_dim;
        kernels::launch_fill_random({base, length * I.head_dim, seed * 7919u + stream_id++, 0.0f, 1.0f}, I.stream);
      }
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  I.lengths_host[static_cast<std::size_t>(request)] = length;
}

// ---- the forward pass ----------------------------------------------------------------------

namespace {

// A prefill chunk: its request and first position (offloaded layers stage the request's earlier positions).
struct PrefillChunk {
  int request = 0;
  std::int64_t first = 0;
};

// Runs `rows` tokens (ids, slots and positions already in the device arrays) through every
// layer; `attention` issues the layer's attention from the QKV buffer into attn_out. Leaves the
// final-normed hidden states of all rows in x_bf16.
// Recording: a prefill or decode call of `request` starting at `position` replaces its feature rows.
void start_features(CudaBackend::Impl& I, int request, std::int64_t position) {
  I.host_features[static_cast<std::size_t>(request)].clear();
  I.feature_base[static_cast<std::size_t>(request)] = position;
}

// Recording: the residual entering `layer` (fp32) of each row, copied to its request's feature row
// (its position less the call's first), in the column block of every feature layer equal to `layer`.
void keep_features(CudaBackend::Impl& I, int layer, std::int64_t rows) {
  const std::size_t width = I.feature_layers.size() * static_cast<std::size_t>(I.hidden);
  std::vector<float> staged;
  for (std::size_t k = 0; k < I.feature_layers.size(); ++k) {
    if (I.feature_layers[k] != layer) continue;
    if (staged.empty()) {
      staged.resize(static_cast<std::size_t>(rows * I.hidden));
      SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(staged.data(), I.residual.ptr, staged.size() * sizeof(float), cudaMemcpyDeviceToHost, I.stream));
      SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
    }
    for (std::int64_t i = 0; i < rows; ++i) {
      const auto request = static_cast<std::size_t>(I.row_requests.at(static_cast<std::size_t>(i)));
      std::vector<float>& f = I.host_features[request];
      const auto row = static_cast<std::size_t>(I.row_positions.at(static_cast<std::size_t>(i)) - I.feature_base[request]);
      if (f.size() < (row + 1) * width) f.resize((row + 1) * width, 0.0f);
      std::copy_n(staged.begin() + static_cast<std::ptrdiff_t>(i * I.hidden), I.hidden,
                  f.begin() + static_cast<std::ptrdiff_t>(row * width + k * static_cast<std::size_t>(I.hidden)));
    }
  }
}

// Recording: the one request's dense attention at this layer (each query head's softmax, mean over
// its group), its keys 0..t and its query, downloaded and shown to the probe in CpuBackend's layouts.
void show_probe(CudaBackend::Impl& I, int layer, const kernels::DecodeAttentionParams& a) {
  const ModelShape& m = I.config.shape;
  const std::int64_t stride = I.options.max_context + 1, kv = m.kv_heads, d = I.head_dim;
  if (!I.probe_scores.ptr) {
    I.probe_scores = DeviceArray<float>(static_cast<std::size_t>(kv * stride));
    I.probe_workspace = DeviceArray<std::uint8_t>(
        kernels::attention_scores_workspace_bytes(1, static_cast<int>(m.q_heads), static_cast<int>(I.options.max_context)));
  }
  kernels::launch_attention_scores(group_mean_scores(a, I.probe_scores.ptr, stride, I.probe_workspace), I.stream);
  const std::int64_t positions = I.row_positions.at(0) + 1, slot = I.row_requests.at(0);
  std::vector<float> scores(static_cast<std::size_t>(kv * stride));
  std::vector<bf16_bits> k(static_cast<std::size_t>(kv * positions * d)), q(static_cast<std::size_t>(I.q_dim));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(scores.data(), I.probe_scores.ptr, scores.size() * sizeof(float), cudaMemcpyDeviceToHost, I.stream));
  for (std::int64_t g = 0; g < kv; ++g)
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(k.data() + g * positions * d, a.k_cache + slot * a.kv_request_stride + g * a.kv_head_stride,
                                          static_cast<std::size_t>(positions * d) * sizeof(bf16_bits), cudaMemcpyDeviceToHost, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(q.data(), a.q, q.size() * sizeof(bf16_bits), cudaMemcpyDeviceToHost, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  std::vector<float> group(static_cast<std::size_t>(kv * positions)), keys(static_cast<std::size_t>(positions * kv * d)), queries(q.size());
  for (std::int64_t g = 0; g < kv; ++g) {
    std::copy_n(scores.begin() + g * stride, positions, group.begin() + g * positions);
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t e = 0; e < d; ++e) keys[static_cast<std::size_t>((p * kv + g) * d + e)] = ref::bf16_to_float(k[static_cast<std::size_t>((g * positions + p) * d + e)]);
  }
  for (std::size_t e = 0; e < q.size(); ++e) queries[e] = ref::bf16_to_float(q[e]);
  I.probe->layer(layer, positions, group.data(), keys.data(), queries.data());
}

template <class Attention>
void forward_layers(CudaBackend::Impl& I, std::int64_t rows, const PrefillChunk* chunk, Attention&& attention) {
  const bool prefill = chunk != nullptr;
  const ModelShape& m = I.config.shape;
  const float eps = static_cast<float>(I.config.rms_norm_eps);
  kernels::launch_embedding({I.proj_out.ptr, I.embed.ptr, I.ids.ptr, rows, I.hidden, I.vocab}, I.stream);
  SPECONTEXT_CUDA_CHECK(cudaMemsetAsync(I.residual.ptr, 0, static_cast<std::size_t>(rows * I.hidden) * sizeof(float), I.stream));
  if (I.timer && !prefill) I.timer->lap(StepPhase::Other, I.stream);  // the embedding, not layer 0's attention
  for (std::size_t l = 0; l < I.layers.size(); ++l) {
    NvtxRange layer_range("layer " + std::to_string(l));
    LayerDevice& L = I.layers[l];
    // residual += previous delta (the embedding for layer 0, the MLP output after); normed input
    kernels::launch_add_rmsnorm({I.residual.ptr, I.proj_out.ptr, L.input_norm.ptr, I.x_bf16.ptr, rows, I.hidden, eps}, I.stream);
    if (I.sparse) I.sparse->export_features(static_cast<int>(l), I.residual.ptr, I.slots.ptr, rows, prefill, I.stream);
    if (!I.feature_layers.empty()) keep_features(I, static_cast<int>(l), rows);
    {
      NvtxRange range("attention");
      const std::int64_t request_stride = m.kv_heads * L.capacity * I.head_dim;
      kernels::RopeKvAppendParams r{I.qkv.ptr, L.k_cache.ptr, L.v_cache.ptr, I.inv_freq.ptr, I.positions.ptr, I.slots.ptr, rows, I.qkv_dim,
                                    m.q_heads, m.kv_heads, I.head_dim, request_stride, L.capacity * I.head_dim,
                                    I.attention_factor};
      if (I.offload && I.offload->offloaded(static_cast<int>(l))) {
        if (chunk) I.offload->stage_prefill(static_cast<int>(l), chunk->request, chunk->first, r, I.stream);
        else I.offload->redirect_append(static_cast<int>(l), r);
      }
      if (L.qkv_bias.ptr || L.q_norm.ptr) {  // the bias or the q/k norms come between the projection and RoPE
        I.gemm(I.x_bf16.ptr, rows, I.hidden, L.wqkv.ptr, I.qkv_dim, I.qkv.ptr, CUDA_R_16BF);
        if (L.qkv_bias.ptr) kernels::launch_add_bias({I.qkv.ptr, L.qkv_bias.ptr, rows, I.qkv_dim, I.qkv_dim}, I.stream);
        if (L.q_norm.ptr) {
          kernels::launch_head_rmsnorm({I.qkv.ptr, L.q_norm.ptr, rows, I.qkv_dim, m.q_heads, I.head_dim, eps}, I.stream);
          kernels::launch_head_rmsnorm({I.qkv.ptr + I.q_dim, L.k_norm.ptr, rows, I.qkv_dim, m.kv_heads, I.head_dim, eps}, I.stream);
        }
        kernels::launch_rope_kv_append(r, I.stream);
      } else {
        I.gemm.qkv_rope_append(I.x_bf16.ptr, I.hidden, L.wqkv.ptr, r);
      }
      attention(static_cast<int>(l), L, request_stride);
      I.gemm(I.attn_out.ptr, rows, I.q_dim, L.wo.ptr, I.hidden, I.proj_out.ptr, CUDA_R_16BF);
      if (I.timer && !prefill) I.timer->lap(StepPhase::Attention, I.stream);
    }
    {
      NvtxRange range("mlp");
      kernels::launch_add_rmsnorm({I.residual.ptr, I.proj_out.ptr, L.post_norm.ptr, I.x_bf16.ptr, rows, I.hidden, eps}, I.stream);
      I.gemm.gate_up_swiglu(I.x_bf16.ptr, rows, I.hidden, L.wgate_up.ptr, I.ffn, I.gate_up.ptr, I.act.ptr);
      I.gemm(I.act.ptr, rows, I.ffn, L.wdown.ptr, I.hidden, I.proj_out.ptr, CUDA_R_16BF);
      if (I.timer && !prefill) I.timer->lap(StepPhase::Mlp, I.stream);
    }
  }
  kernels::launch_add_rmsnorm({I.residual.ptr, I.proj_out.ptr, I.final_norm.ptr, I.x_bf16.ptr, rows, I.hidden, eps}, I.stream);
}

// The fields decode and prefill attention share: queries in the QKV buffer, the layer's
// caches, the output buffer, the head shape.
template <class Params>
void set_attention_io(Params& a, const CudaBackend::Impl& I, const LayerDevice& L, std::int64_t request_stride) {
  const ModelShape& m = I.config.shape;
  a.q = I.qkv.ptr;
  a.q_row_stride = I.qkv_dim;
  a.k_cache = L.k_cache.ptr;
  a.v_cache = L.v_cache.ptr;
  a.kv_request_stride = request_stride;
  a.kv_head_stride = L.capacity * I.head_dim;
  a.slots = I.slots.ptr;
  a.out = I.attn_out.ptr;
  a.out_row_stride = I.q_dim;
  a.q_heads = static_cast<int>(m.q_heads);
  a.kv_heads = static_cast<int>(m.kv_heads);
  a.head_dim = static_cast<int>(I.head_dim);
  a.max_context = static_cast<int>(std::max<std::int64_t>(L.capacity, 1));  // offloaded layers point elsewhere later
  a.scale = 1.0f / std::sqrt(static_cast<float>(I.head_dim));
}

// The decode step of `rows` requests: everything between the uploaded inputs and the logits.
void decode_forward(CudaBackend::Impl& I, int rows, int max_length) {
  if (use_persistent(I, rows)) {
    NvtxRange range("persistent decode");
    kernels::launch_persistent_decode(persistent_params(I), I.stream);
    return;
  }
  if (I.timer) I.timer->begin(I.stream);
  if (I.sparse) I.sparse->select_before_forward(I.ids.ptr, I.slots.ptr, I.lengths.ptr, rows, I.stream);
  if (I.offload) {
    const int heads = I.sparse->list_heads();
    KvOffload::Lists lists;
    lists.indices = I.sparse->lists_of_layer(0);
    lists.request_stride = heads * I.sparse->list_stride();
    lists.head_stride = heads == 1 ? 0 : I.sparse->list_stride();
    lists.counts = I.sparse->counts_of_layer(0);
    lists.count_request_stride = heads;
    lists.count_head_stride = heads == 1 ? 0 : 1;
    I.offload->plan_and_prefetch(lists, I.slots.ptr, I.positions.ptr, rows, I.stream);
  }
  forward_layers(I, rows, nullptr, [&](int layer, LayerDevice& L, std::int64_t request_stride) {
    kernels::DecodeAttentionParams a;
    set_attention_io(a, I, L, request_stride);
    a.lengths = I.lengths.ptr;
    a.workspace = reinterpret_cast<float*>(I.attention_workspace.ptr);
    a.workspace_bytes = I.attention_workspace.count;
    a.requests = rows;
    a.max_length = std::min(max_length, a.max_context);
    if (I.offload && I.offload->offloaded(layer)) {
      I.offload->before_attention(layer, a, rows, I.stream);
      kernels::launch_decode_attention(a, I.stream);
    } else if (I.sparse) {
      I.sparse->attend(layer, a, I.stream);
    } else {
      // The kernel just before appended the step's keys; slots and lengths were uploaded before
      // the step and the older rows written by earlier steps or prefill.
      a.history_ready = true;
      kernels::launch_decode_attention(a, I.stream);
    }
    if (I.probe) show_probe(I, layer, a);
  });
  if (I.offload) I.offload->join(I.stream);
  I.gemm(I.x_bf16.ptr, rows, I.hidden, I.output_matrix(), I.vocab, I.logits.ptr, CUDA_R_32F);
  if (I.timer) {
    I.timer->lap(StepPhase::Other, I.stream);  // the embedding, the final norm and the LM head, between the marks above
    I.timer->end(I.profile);
  }
}

}  // namespace

std::vector<float> CudaBackend::prefill(int request, const std::vector<int>& tokens) {
  Impl& I = *impl_;
  require_request(request, I.options.max_requests, "prefill");
  if (tokens.empty()) throw std::invalid_argument("prefill: no tokens");
  std::int64_t& len = I.lengths_host[static_cast<std::size_t>(request)];
  if (len + static_cast<std::int64_t>(tokens.size()) > I.options.max_context)
    throw std::invalid_argument("prefill: " + std::to_string(len + tokens.size()) + " tokens exceed the context of " + std::to_string(I.options.max_context));
  for (int t : tokens)
    if (t < 0 || t >= I.vocab) throw std::invalid_argument("prefill: token id " + std::to_string(t) + " is outside the vocabulary");
  std::int64_t needed = len + static_cast<std::int64_t>(tokens.size());
  for (std::int64_t other : I.lengths_host) needed = std::max(needed, other);
  adapt_placement(I, needed);
  NvtxRange range("prefill");
  start_features(I, request, len);
  std::vector<std::int32_t> ids, slots, positions;
  for (std::size_t begin = 0; begin < tokens.size(); begin += static_cast<std::size_t>(I.options.prefill_chunk)) {
    const std::size_t end = std::min(tokens.size(), begin + static_cast<std::size_t>(I.options.prefill_chunk));
    const auto rows = static_cast<std::int64_t>(end - begin);
    ids.assign(tokens.begin() + static_cast<std::ptrdiff_t>(begin), tokens.begin() + static_cast<std::ptrdiff_t>(end));
    slots.assign(static_cast<std::size_t>(rows), request);
    positions.resize(static_cast<std::size_t>(rows));
    for (std::int64_t i = 0; i < rows; ++i) positions[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(len + i);
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.ids.ptr, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, I.stream));
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.slots.ptr, slots.data(), slots.size() * 4, cudaMemcpyHostToDevice, I.stream));
    SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.positions.ptr, positions.data(), positions.size() * 4, cudaMemcpyHostToDevice, I.stream));
    if (I.sparse) I.sparse->stage_prefill(positions, I.stream);
    I.row_requests.assign(positions.size(), request);
    I.row_positions.assign(positions.begin(), positions.end());
    const PrefillChunk chunk{request, len};
    forward_layers(I, rows, &chunk, [&](int layer, LayerDevice& L, std::int64_t request_stride) {
      kernels::PrefillAttentionParams a;
      set_attention_io(a, I, L, request_stride);
      a.positions = I.positions.ptr;
      a.tokens = static_cast<int>(rows);
      const bool offloaded = I.offload && I.offload->offloaded(layer);
      if (offloaded) I.offload->redirect_prefill_attention(a);
      kernels::launch_prefill_attention(a, I.stream);
      if (offloaded) I.offload->after_prefill_attention(layer, request, len, rows, I.stream);
    });
    if (I.sparse) I.sparse->after_prefill_chunk(len, I.ids.ptr, I.slots.ptr, rows, I.stream);
    len += rows;
    if (end == tokens.size())  // logits of the last position only
      I.gemm(I.x_bf16.ptr + (rows - 1) * I.hidden, 1, I.hidden, I.output_matrix(), I.vocab, I.logits.ptr, CUDA_R_32F);
    SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));  // the host arrays are reused by the next chunk
  }
  std::vector<float> out(static_cast<std::size_t>(I.vocab));
  SPECONTEXT_CUDA_CHECK(cudaMemcpy(out.data(), I.logits.ptr, out.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return out;
}

namespace {

// Uploads the step's inputs and runs the decode step, through the CUDA graph of this batch
// size when enabled (captured on first use; the inputs live at fixed device addresses, and the
// attention grid is sized from max_context, so one graph serves every step).
void run_decode_step(CudaBackend::Impl& I, const std::vector<int>& requests, const std::vector<int>& tokens, const char* where) {
  if (requests.empty() || requests.size() != tokens.size())
    throw std::invalid_argument(std::string(where) + ": one token per request is needed");
  if (static_cast<std::int64_t>(requests.size()) > I.options.max_requests)
    throw std::invalid_argument(std::string(where) + ": more requests than the backend holds");
  std::vector<std::int32_t> ids(requests.size()), slots(requests.size()), positions(requests.size()), lengths(requests.size());
  std::vector<bool> seen(static_cast<std::size_t>(I.options.max_requests), false);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    require_request(requests[i], I.options.max_requests, where);
    if (seen[static_cast<std::size_t>(requests[i])]) throw std::invalid_argument(std::string(where) + ": request listed twice");
    seen[static_cast<std::size_t>(requests[i])] = true;
    if (tokens[i] < 0 || tokens[i] >= I.vocab) throw std::invalid_argument(std::string(where) + ": token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    const std::int64_t len = I.lengths_host[static_cast<std::size_t>(requests[i])];
    if (len + 1 > I.options.max_context) throw std::invalid_argument(std::string(where) + ": request " + std::to_string(requests[i]) + " is at the end of its context");
    ids[i] = tokens[i];
    slots[i] = requests[i];
    positions[i] = static_cast<std::int32_t>(len);
    lengths[i] = static_cast<std::int32_t>(len + 1);
  }
  const int rows = static_cast<int>(requests.size());
  std::int64_t needed = 0;
  for (std::size_t r = 0; r < I.lengths_host.size(); ++r) needed = std::max(needed, I.lengths_host[r] + (seen[r] ? 1 : 0));
  adapt_placement(I, needed);
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.ids.ptr, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.slots.ptr, slots.data(), slots.size() * 4, cudaMemcpyHostToDevice, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.positions.ptr, positions.data(), positions.size() * 4, cudaMemcpyHostToDevice, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.lengths.ptr, lengths.data(), lengths.size() * 4, cudaMemcpyHostToDevice, I.stream));
  if (I.sparse) I.sparse->stage_decode(positions, I.stream);
  I.row_requests.assign(requests.begin(), requests.end());
  I.row_positions.assign(positions.begin(), positions.end());
  for (std::size_t i = 0; i < requests.size(); ++i) start_features(I, requests[i], positions[i]);
  // Host copies inside the forward (profiling, recording) cannot be captured: kernel by kernel then.
  if (!I.options.cuda_graph || I.timer || I.probe || !I.feature_layers.empty()) {
    int max_length = 0;
    for (int l : lengths) max_length = std::max(max_length, l);
    decode_forward(I, rows, max_length);
  } else {
    auto it = I.decode_graphs.find(rows);
    if (it == I.decode_graphs.end()) {
      cudaGraph_t graph = nullptr;
      SPECONTEXT_CUDA_CHECK(cudaStreamBeginCapture(I.stream, cudaStreamCaptureModeThreadLocal));
      try {
        decode_forward(I, rows, static_cast<int>(I.options.max_context));
      } catch (...) {
        cudaStreamEndCapture(I.stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      SPECONTEXT_CUDA_CHECK(cudaStreamEndCapture(I.stream, &graph));
      cudaGraphExec_t exec = nullptr;
      SPECONTEXT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      SPECONTEXT_CUDA_CHECK(cudaGraphDestroy(graph));
      it = I.decode_graphs.emplace(rows, exec).first;
    }
    SPECONTEXT_CUDA_CHECK(cudaGraphLaunch(it->second, I.stream));
  }
  for (std::size_t i = 0; i < requests.size(); ++i) ++I.lengths_host[static_cast<std::size_t>(requests[i])];
  if (I.sparse && I.options.track_selections) {
    std::vector<std::vector<TokenSelection>> now = I.sparse->download_selections(rows, positions, I.stream);
    for (std::size_t i = 0; i < requests.size(); ++i) I.overlap.record(requests[i], std::move(now[i]));
  }
  if (I.sparse && I.options.measure_attention_mass) {
    // [layers][rows][kv_heads], each the mean over the group's query heads: the layer's sum over its
    // query heads is group times the sum over the KV heads. Offloaded layers are not measured.
    const std::vector<float> mass = I.sparse->download_attention_mass(rows, I.stream);
    const ModelShape& m = I.config.shape;
    const std::size_t per_layer = static_cast<std::size_t>(rows) * m.kv_heads;
    for (int l = 0; l < static_cast<int>(m.layers); ++l) {
      if (I.offload && I.offload->offloaded(l)) continue;
      double sum = 0;
      for (std::size_t e = 0; e < per_layer; ++e) sum += mass[static_cast<std::size_t>(l) * per_layer + e];
      I.mass.add(l, sum * static_cast<double>(m.q_heads / m.kv_heads), static_cast<std::int64_t>(rows) * m.q_heads);
    }
  }
}

}  // namespace

std::vector<float> CudaBackend::decode(const std::vector<int>& requests, const std::vector<int>& tokens) {
  Impl& I = *impl_;
  NvtxRange range("decode");
  run_decode_step(I, requests, tokens, "decode");
  std::vector<float> out(requests.size() * static_cast<std::size_t>(I.vocab));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(out.data(), I.logits.ptr, out.size() * sizeof(float), cudaMemcpyDeviceToHost, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  return out;
}

std::vector<int> CudaBackend::decode_sample(const std::vector<int>& requests, const std::vector<int>& tokens, const SamplingParams& sampling,
                                            std::int64_t step) {
  Impl& I = *impl_;
  NvtxRange range("step " + std::to_string(step));
  run_decode_step(I, requests, tokens, "decode_sample");
  const int rows = static_cast<int>(requests.size());
  std::vector<float> u(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) u[i] = static_cast<float>(sampling_uniform(sampling.seed, step, requests[i]));
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(I.uniforms.ptr, u.data(), u.size() * sizeof(float), cudaMemcpyHostToDevice, I.stream));
  kernels::launch_sample({I.logits.ptr, I.uniforms.ptr, I.sampled.ptr, rows, I.vocab, I.vocab, sampling.temperature, sampling.top_p}, I.stream);
  std::vector<std::int32_t> out(requests.size());
  SPECONTEXT_CUDA_CHECK(cudaMemcpyAsync(out.data(), I.sampled.ptr, out.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost, I.stream));
  SPECONTEXT_CUDA_CHECK(cudaStreamSynchronize(I.stream));
  return std::vector<int>(out.begin(), out.end());
}

}  // namespace specontext
