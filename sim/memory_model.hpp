#pragma once
// The paper's memory model (PAPER.md §4): Eq. 6-8 and the threshold and runtime
// algorithms (CR Alg. 2 and Alg. 1). Symbols follow the paper's Table 3.
// The engine's adaptive memory manager uses this same class: one model of memory.
#include <string>
#include <vector>

namespace specontext {

// Weights plus 30% runtime memory (activations, temporaries): PAPER.md §4.2. The simulator
// charges every system's weights this way.
constexpr double kRuntimeFactor = 1.3;

// The printed algorithm subtracts i*B*R*H*D without Eq. 7's factor 4 (K and V, 2 bytes).
enum class BufferTerm { Eq7, Printed };
BufferTerm parse_buffer_term(const std::string& s);  // "eq7" | "printed"
const char* to_string(BufferTerm t);

struct MemoryModelInputs {
  double gpu_memory_bytes = 0;  // Mem_GPU
  double model_bytes = 0;       // M_O
  double draft_bytes = 0;       // M_D: full draft or pruned retrieval head, the caller's choice
  long long layers = 0;         // L
  double alpha = 1;             // query heads per KV head
  long long requests = 1;       // R
  long long budget = 0;         // B
  // Bytes one token adds to one layer's KV cache: the paper's 4*H*D (K and V, 2 bytes each);
  // for MLA the latent and rope key instead.
  double kv_bytes_per_token_layer = 0;
  double runtime_factor = kRuntimeFactor;
  BufferTerm buffer_term = BufferTerm::Eq7;
};

struct MemoryBreakdown {
  double weights_and_runtime = 0;  // 1.3 (M_O + M_D)
  double kv_gpu_layers = 0;        // 4 R L_GPU S H D
  double kv_draft_layer = 0;       // the retrieval head's cache, the "+1"
  double repeat_kv_buffer = 0;     // the "+alpha" term
  double offload_buffers = 0;      // 4 R L_CPU B H D
  double kv_host = 0;              // KV of offloaded layers, in host memory
  double total_gpu() const { return weights_and_runtime + kv_gpu_layers + kv_draft_layer + repeat_kv_buffer + offload_buffers; }
};

class MemoryModel {
 public:
  explicit MemoryModel(MemoryModelInputs in);
  const MemoryModelInputs& inputs() const { return in_; }

  double weights_and_runtime() const;       // 1.3 (M_O + M_D)
  double kv_unit() const;                   // 4 R H D: one token in one layer for all requests
  double all_on_gpu(long long S) const;     // Eq. 6
  double split(long long S, long long gpu_layers) const;  // Eq. 7
  MemoryBreakdown breakdown(long long S, long long gpu_layers) const;
  // Eq. 8: the largest L_GPU with M_part <= Mem_GPU; -1 when not even L_GPU = 0 fits.
  long long max_gpu_layers(long long S) const;

  // CR Alg. 2: S_0^T ... S_L^T. S_i^T is the first length at which i offloaded layers stop
  // fitting. Negative when the weights alone do not fit.
  std::vector<long long> thresholds() const;
  // CR Alg. 1: layers offloaded at length S, starting from zero and offloading the last layer
  // first while S >= S^T_{L_CPU}. Equals L once S passes S_{L-1}^T; beyond S_L^T nothing fits.
  long long cpu_layers_at(long long S) const;
  bool fits_at(long long S) const;  // S < S_L^T with the adaptive policy
  // The buffer one offloaded layer costs in the thresholds, per the selected BufferTerm.
  double buffer_per_offloaded_layer() const;

 private:
  MemoryModelInputs in_;
  std::vector<long long> thresholds_;
};

}  // namespace specontext
