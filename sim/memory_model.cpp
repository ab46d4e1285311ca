#include "sim/memory_model.hpp"

#include <cmath>
#include <stdexcept>

#include "sim/config_error.hpp"

namespace specontext {

BufferTerm parse_buffer_term(const std::string& s) {
  if (s == "eq7") return BufferTerm::Eq7;
  if (s == "printed") return BufferTerm::Printed;
  throw ConfigError("--buffer-term", "", "expected eq7 or printed, got '" + s + "'");
}

const char* to_string(BufferTerm t) { return t == BufferTerm::Eq7 ? "eq7" : "printed"; }

MemoryModel::MemoryModel(MemoryModelInputs in) : in_(in) {
  if (in_.layers <= 0) throw std::invalid_argument("memory model: layers must be positive");
  if (in_.requests <= 0) throw std::invalid_argument("memory model: requests must be positive");
  if (in_.budget < 0) throw std::invalid_argument("memory model: budget must be non-negative");
  if (!(in_.kv_bytes_per_token_layer > 0)) throw std::invalid_argument("memory model: KV bytes per token must be positive");
  thresholds_.resize(static_cast<std::size_t>(in_.layers) + 1);
  const double free = in_.gpu_memory_bytes - weights_and_runtime();
  const double L = static_cast<double>(in_.layers);
  for (long long i = 0; i <= in_.layers; ++i) {
    const double numerator = free - static_cast<double>(i) * buffer_per_offloaded_layer();
    const double per_token = kv_unit() * (L + 1 + in_.alpha - static_cast<double>(i));
    thresholds_[static_cast<std::size_t>(i)] = static_cast<long long>(std::floor(numerator / per_token));
  }
}

double MemoryModel::weights_and_runtime() const { return in_.runtime_factor * (in_.model_bytes + in_.draft_bytes); }

double MemoryModel::kv_unit() const { return static_cast<double>(in_.requests) * in_.kv_bytes_per_token_layer; }

double MemoryModel::buffer_per_offloaded_layer() const {
  const double eq7 = kv_unit() * static_cast<double>(in_.budget);
  return in_.buffer_term == BufferTerm::Eq7 ? eq7 : eq7 / 4.0;
}

MemoryBreakdown MemoryModel::breakdown(long long S, long long gpu_layers) const {
  MemoryBreakdown b;
  const double s = static_cast<double>(S);
  b.weights_and_runtime = weights_and_runtime();
  b.kv_gpu_layers = kv_unit() * static_cast<double>(gpu_layers) * s;
  b.kv_draft_layer = kv_unit() * s;
  b.repeat_kv_buffer = kv_unit() * in_.alpha * s;
  // Eq. 7 charges the B-slot buffers at 4RBHD each; the printed algorithm at RBHD.
  b.offload_buffers = static_cast<double>(in_.layers - gpu_layers) * kv_unit() * static_cast<double>(in_.budget);
  b.kv_host = kv_unit() * static_cast<double>(in_.layers - gpu_layers) * s;
  return b;
}

double MemoryModel::all_on_gpu(long long S) const {
  return weights_and_runtime() + kv_unit() * (static_cast<double>(in_.layers) + 1 + in_.alpha) * static_cast<double>(S);
}

double MemoryModel::split(long long S, long long gpu_layers) const { return breakdown(S, gpu_layers).total_gpu(); }

long long MemoryModel::max_gpu_layers(long long S) const {
  for (long long g = in_.layers; g >= 0; --g)
    if (split(S, g) <= in_.gpu_memory_bytes) return g;
  return -1;
}

std::vector<long long> MemoryModel::thresholds() const { return thresholds_; }

long long MemoryModel::cpu_layers_at(long long S) const {
  long long cpu = 0;
  while (cpu < in_.layers && S >= thresholds_[static_cast<std::size_t>(cpu)]) ++cpu;
  return cpu;
}

bool MemoryModel::fits_at(long long S) const { return S < thresholds_.back(); }

}  // namespace specontext
