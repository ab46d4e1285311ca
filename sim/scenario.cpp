#include "sim/scenario.hpp"

#include <sstream>

#include "sim/json_fields.hpp"

namespace specontext {

std::string Components::str() const {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ",";
    s += name;
  };
  add(c1, "c1");
  add(c2, "c2");
  add(c3, "c3");
  return s;
}

Components parse_components(const std::string& text) {
  Components c{false, false, false};
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "c1") c.c1 = true;
    else if (item == "c2") c.c2 = true;
    else if (item == "c3") c.c3 = true;
    else throw ConfigError("--components", "", "unknown component '" + item + "' (expected c1, c2, c3)");
  }
  if (!c.c1) throw ConfigError("--components", "", "c1 (the retrieval head) is required; c2 and c3 build on it");
  return c;
}

double Scenario::param(const std::string& key) const {
  return JsonFields(system_params, params_origin).number(key);
}

MemoryModel Scenario::memory_model() const {
  MemoryModelInputs in;
  in.gpu_memory_bytes = gpu_memory_bytes;
  in.model_bytes = model.weight_bytes();
  in.draft_bytes = draft_bytes(draft, draft_part);
  in.layers = model.layers;
  in.alpha = model.group_size();
  in.requests = workload.requests;
  in.budget = workload.budget;
  in.kv_bytes_per_token_layer = model.kv_elements_per_token_layer() * 2.0;  // fp16 KV (PAPER.md §5.2)
  in.buffer_term = buffer_term;
  return MemoryModel(in);
}

}  // namespace specontext
