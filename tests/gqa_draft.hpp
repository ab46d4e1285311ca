#pragma once
// A seeded random EAGLE-3 draft of the llama-gqa fixture (8 query / 2 KV heads of 32, 2 layers): 4
// query heads of 32 over the target's 2 KV heads, reading the residual streams entering layers 0, 1
// and 1; the GPU tests of the sparse path run it beside the CPU reference. `qk_scale` > 1 makes the
// attention peakier; at 3-4 all but a few of a few hundred scores underflow to 0 (a handful of
// positions decide, the rest of a top-B is tie-breaking), at 1 the whole ranking is well spread.
#include <nlohmann/json.hpp>

#include "engine/eagle3_draft.hpp"
#include "tests/hf_fixture.hpp"
#include "tests/tiny_eagle3.hpp"

namespace specontext::testing {

inline Eagle3Draft gqa_draft(std::uint32_t seed, float qk_scale = 1.0f) {
  const nlohmann::json j = {{"architectures", {"LlamaForCausalLMEagle3"}}, {"hidden_size", 128}, {"intermediate_size", 256},
                            {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 32}, {"num_hidden_layers", 1},
                            {"vocab_size", 512}, {"draft_vocab_size", 64}, {"target_hidden_size", 128}, {"rms_norm_eps", 1e-5},
                            {"rope_theta", 10000.0}, {"max_position_embeddings", 8192},
                            {"eagle_aux_hidden_state_layer_ids", {0, 1, 1}}};
  Eagle3Draft d;
  d.config = parse_eagle3_draft_config(j, "gqa-draft/config.json", tiny_llama_gqa().config);
  d.weights = random_draft_weights(d.config, seed);
  for (float& x : d.weights.q.data) x *= qk_scale;
  for (float& x : d.weights.k.data) x *= qk_scale;
  return d;
}

}  // namespace specontext::testing
