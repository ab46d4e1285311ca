#pragma once
// A Llama-architecture model stored as a GGUF file (llama.cpp's convert_hf_to_gguf.py layout):
// its config read from the llama.* metadata, and its weights mapped to the engine's Hugging Face
// layout, dequantised to fp32.
#include <filesystem>

#include "engine/gguf.hpp"
#include "engine/model_config.hpp"
#include "engine/weights.hpp"

namespace specontext {

// A path `--model` should read as a GGUF file: it ends in .gguf (any case), or it is a regular
// file that starts with the GGUF magic.
bool is_gguf_path(const std::filesystem::path& path);

// The config a Hugging Face LlamaForCausalLM config.json would hold, built from the metadata and
// passed through parse_engine_config (one config path for both formats); errors name the GGUF key.
// general.architecture must be "llama". Llama 3 RoPE scaling, which llama.cpp stores as the
// per-frequency divisors of the tensor rope_freqs.weight, is recovered from that tensor.
ModelConfig gguf_engine_config(const GgufFile& file);

// Every tensor the config implies, in llama.cpp naming, with its shape and type checked before any
// is read; tensors the config does not imply are an error. q and k rows are un-permuted from
// GGML's RoPE layout back to Hugging Face's (rotate_half) layout.
ModelWeights gguf_weights(const ModelConfig& config, const GgufFile& file);

// llama.cpp's tensor name for a Hugging Face name the engine uses ("model.layers.3.mlp.up_proj.weight"
// -> "blk.3.ffn_up.weight"); empty if there is none.
std::string gguf_tensor_name(const std::string& hf_name);

}  // namespace specontext
