#include "sim/system_model.hpp"

#include <limits>
#include <sstream>

#include "sim/config_error.hpp"
#include "sim/systems/systems.hpp"

namespace specontext {

long long SystemModel::max_requests(const Scenario&) const { return std::numeric_limits<long long>::max(); }

double SystemModel::prefill_peak_gpu_bytes(const Scenario& sc) const { return memory_at(sc, sc.workload.input).gpu_bytes; }

namespace {
std::string gb(double bytes) {
  std::ostringstream s;
  s.precision(3);
  s << bytes / 1e9 << " GB";
  return s.str();
}
}  // namespace

Feasibility SystemModel::feasibility(const Scenario& sc) const {
  if (sc.workload.requests > max_requests(sc))
    return {false, name() + " decodes at most " + std::to_string(max_requests(sc)) + " request(s) at once"};
  if (sc.model.max_positions > 0 && sc.final_length() > sc.model.max_positions)
    return {false, "context " + std::to_string(sc.final_length()) + " exceeds the model's max_position_embeddings " + std::to_string(sc.model.max_positions)};
  const double prefill = prefill_peak_gpu_bytes(sc);
  if (prefill > sc.gpu_memory_bytes)
    return {false, "prefill needs " + gb(prefill) + " of GPU memory, " + gb(sc.gpu_memory_bytes) + " available"};
  // The last decode step reads final_length - 1 cached tokens and appends one more.
  const MemoryUse end = memory_at(sc, sc.final_length());
  if (end.gpu_bytes > sc.gpu_memory_bytes)
    return {false, "decoding to " + std::to_string(sc.final_length()) + " tokens needs " + gb(end.gpu_bytes) + " of GPU memory, " + gb(sc.gpu_memory_bytes) + " available"};
  if (end.host_bytes > sc.hw.host_memory_bytes)
    return {false, "offloaded KV needs " + gb(end.host_bytes) + " of host memory, " + gb(sc.hw.host_memory_bytes) + " available"};
  return {};
}

std::vector<std::string> system_names() {
  return {"hf-eager", "hf-flash", "flashinfer", "quest", "clusterkv", "shadowkv", "specontext"};
}

std::unique_ptr<SystemModel> make_system(const std::string& name) {
  if (name == "hf-eager") return make_hf_eager();
  if (name == "hf-flash") return make_hf_flash();
  if (name == "flashinfer") return make_flashinfer();
  if (name == "quest") return make_quest();
  if (name == "clusterkv") return make_clusterkv();
  if (name == "shadowkv") return make_shadowkv();
  if (name == "specontext") return make_specontext();
  std::string known;
  for (const auto& n : system_names()) known += (known.empty() ? "" : ", ") + n;
  throw ConfigError("--system", "", "unknown system '" + name + "' (known: " + known + ")");
}

}  // namespace specontext
