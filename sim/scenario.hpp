#pragma once
// Everything one simulated run needs: hardware, model, draft, workload, system switches.
// Hardware, model and workload stay separate inputs, as in Vidur and LLMCompass.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sim/hardware.hpp"
#include "sim/memory_model.hpp"
#include "sim/model_shape.hpp"

namespace specontext {

struct Workload {
  long long input = 0;   // prompt tokens per request
  long long output = 0;  // generated tokens per request
  long long requests = 1;
  long long budget = 2048;  // KV budget B, tokens per KV head per request
};

// SpeContext's three contributions, switchable for the ablation (PAPER.md §3-4).
struct Components {
  bool c1 = true;  // retrieval head + sparse attention
  bool c2 = true;  // asynchronous prefetch + elastic loading
  bool c3 = true;  // adaptive memory management
  std::string str() const;  // "c1,c2,c3"
};
Components parse_components(const std::string& s);  // "c1,c2" ...

struct Scenario {
  Hardware hw;
  ModelShape model;
  ModelShape draft;  // EAGLE-3 draft (given, or derived from the model)
  DraftPart draft_part = DraftPart::HeadEagleInput;
  Workload workload;
  Components components;
  double gpu_memory_bytes = 0;  // usable GPU memory: the card's, or a cap (the paper's 4 GB edge setup)
  double overlap = 0.8;          // adjacent-step selection overlap for elastic loading (PAPER.md §3.2)
  BufferTerm buffer_term = BufferTerm::Eq7;
  // A fixed placement: the last this many layers' KV in host memory at every S, instead of what
  // c3 or the static rule decides (a measured run's placement, for calibration). Offloading systems only.
  std::optional<long long> offloaded_layers;
  nlohmann::json system_params;  // this system's entry of configs/systems.json
  std::string params_origin;

  long long final_length() const { return workload.input + workload.output; }
  double param(const std::string& key) const;  // numeric system parameter (error if absent)
  MemoryModel memory_model() const;             // the paper's memory model for this scenario
};

}  // namespace specontext
