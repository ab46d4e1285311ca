#include "engine/eagle3_draft.hpp"

#include <string>
#include <variant>

#include "engine/rope.hpp"
#include "engine/safetensors.hpp"
#include "sim/config_error.hpp"
#include "sim/json_fields.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;

std::string target_name(const ModelConfig& target) { return "the target (" + target.origin + ")"; }

std::vector<int> parse_aux_layers(const JsonFields& f, const ModelConfig& target) {
  const long long layers = target.shape.layers;
  const char* field = "eagle_aux_hidden_state_layer_ids";
  std::vector<int> ids;
  if (f.has(field)) {
    const auto& v = f.raw(field);
    if (!v.is_array() || v.empty()) f.fail(field, "expected a non-empty list of layer indices, got " + v.dump());
    for (const auto& id : v) {
      if (!id.is_number_integer()) f.fail(field, "expected integers, got " + v.dump());
      ids.push_back(id.get<int>());
    }
  } else {
    ids = {2, static_cast<int>(layers / 2), static_cast<int>(layers - 3)};
  }
  for (int id : ids)
    if (id < 0 || id >= layers)
      f.fail(field, std::string(f.has(field) ? "" : "absent, and the default [2, L/2, L-3] gives ") + "layer " + std::to_string(id) +
                        ", outside the " + std::to_string(layers) + " layers of " + target_name(target));
  return ids;
}

// A folder of pytorch_model.bin (some released drafts ship only that) would otherwise fail with
// Checkpoint's generic "no model.safetensors": say what to do instead.
void reject_pickle_only(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors", ec) || fs::exists(dir / "model.safetensors.index.json", ec)) return;
  for (const char* name : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
    if (fs::exists(dir / name, ec))
      throw ConfigError(dir.string(), "",
                        std::string("holds ") + name + " but no model.safetensors: the engine reads safetensors only "
                        "(convert it, e.g. safetensors.torch.save_file(torch.load(\"pytorch_model.bin\"), \"model.safetensors\"))");
}

}  // namespace

Eagle3DraftConfig parse_eagle3_draft_config(const nlohmann::json& j, const std::string& origin, const ModelConfig& target) {
  Eagle3DraftConfig d;
  d.layer = parse_layer_config(j, origin);
  const ModelShape& s = d.layer.shape;
  const ModelShape& t = target.shape;
  JsonFields f(j, origin);

  const bool eagle3_name = s.architecture == "LlamaForCausalLMEagle3" || s.architecture == "Eagle3LlamaForCausalLM";
  if (!eagle3_name && !(s.architecture == "LlamaForCausalLM" && f.has("draft_vocab_size")))
    f.fail("architectures", "an EAGLE-3 draft is LlamaForCausalLMEagle3 or Eagle3LlamaForCausalLM (or LlamaForCausalLM with "
                            "draft_vocab_size, as yuhuili's drafts), not '" + s.architecture + "'");
  if (s.attention_bias) f.fail("attention_bias", "EAGLE-3 drafts have no q/k/v biases and the retrieval head reads none");
  rope_inverse_frequencies(d.layer);  // fails here, naming the field, rather than when the head is built
  d.draft_vocab = s.draft_vocab;
  d.target_hidden = s.target_hidden;

  if (d.target_hidden != t.hidden)
    f.fail("target_hidden_size", std::string(f.has("target_hidden_size") ? "is " : "is absent, so hidden_size ") +
                                     std::to_string(d.target_hidden) + ", but " + target_name(target) + " has hidden_size " +
                                     std::to_string(t.hidden) + ": fc reads the target's features");
  if (s.vocab != t.vocab)
    f.fail("vocab_size", std::to_string(s.vocab) + " differs from the vocab_size " + std::to_string(t.vocab) + " of " +
                             target_name(target) + ": the draft reads the target's tokens");
  if (s.kv_heads != t.kv_heads)
    f.fail("num_key_value_heads", "the draft has " + std::to_string(s.kv_heads) + " KV heads and " + target_name(target) + " " +
                                      std::to_string(t.kv_heads) + ": head-level selection maps draft KV head h to target KV "
                                      "head h, so the counts must be equal");
  d.aux_layers = parse_aux_layers(f, target);
  return d;
}

Eagle3Draft load_eagle3_draft(const fs::path& dir, const ModelConfig& target) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw ConfigError(dir.string(), "", "no such draft folder");
  if (!fs::is_directory(dir, ec)) throw ConfigError(dir.string(), "", "is not a folder (a draft is a folder with config.json)");
  const fs::path config_path = dir / "config.json";
  if (!fs::is_regular_file(config_path, ec)) throw ConfigError(config_path.string(), "", "missing: a draft folder must hold config.json");
  reject_pickle_only(dir);

  Eagle3Draft d;
  d.config = parse_eagle3_draft_config(read_json_file(config_path), config_path.string(), target);
  const ModelShape& s = d.config.layer.shape;
  const std::int64_t h = s.hidden, features = static_cast<std::int64_t>(d.config.aux_layers.size()) * d.config.target_hidden;
  const Checkpoint ckpt = Checkpoint::open(dir);

  auto tensor_error = [](const fs::path& where, const std::string& name, const std::string& what) {
    throw ConfigError(where.string() + ": tensor '" + name + "'", "", what);
  };
  // Shape and dtype checks before any data is read, so a mismatched draft fails at once.
  auto check = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    if (!ckpt.has(name))
      tensor_error(dir, name, "missing: the retrieval head needs it, with shape " + shape_string(shape) + " (" + config_path.string() + ")");
    const TensorInfo& info = ckpt.info(name);
    if (info.shape != shape)
      tensor_error(info.file, name, "has shape " + shape_string(info.shape) + " but " + config_path.string() + " implies " + shape_string(shape));
    if (!is_readable_float(info.dtype))
      tensor_error(info.file, name, std::string("has dtype ") + to_string(info.dtype) + "; weights must be F32, F16 or BF16");
  };
  using Target = std::variant<Matrix*, std::vector<float>*>;
  struct Wanted {
    std::string name;
    std::vector<std::int64_t> shape;
    Target target;
  };
  Eagle3DraftWeights& w = d.weights;
  std::vector<Wanted> wanted = {
      {"fc.weight", {h, features}, &w.fc},
      {"midlayer.hidden_norm.weight", {h}, &w.hidden_norm},
      {"midlayer.input_layernorm.weight", {h}, &w.input_norm},
      {"midlayer.self_attn.q_proj.weight", {s.q_heads * s.head_dim, 2 * h}, &w.q},
      {"midlayer.self_attn.k_proj.weight", {s.kv_heads * s.head_dim, 2 * h}, &w.k},
  };
  if (ckpt.has("embed_tokens.weight")) {
    wanted.push_back({"embed_tokens.weight", {s.vocab, h}, &w.embed});
  } else if (h != target.shape.hidden) {
    throw ConfigError(config_path.string(), "hidden_size",
                      std::to_string(h) + ", but the draft ships no embed_tokens.weight, so it embeds tokens with " + target_name(target) +
                          "'s embedding, whose rows have " + std::to_string(target.shape.hidden) + " values");
  }
  for (const Wanted& t : wanted) check(t.name, t.shape);
  for (const Wanted& t : wanted) {
    std::vector<float> values = ckpt.read_f32(t.name);
    if (auto* m = std::get_if<Matrix*>(&t.target)) {
      (*m)->rows = t.shape[0];
      (*m)->cols = t.shape[1];
      (*m)->data = std::move(values);
    } else {
      *std::get<std::vector<float>*>(t.target) = std::move(values);
    }
  }
  return d;
}

bool extend_draft_context(Eagle3DraftConfig& c, std::int64_t context) {
  ModelConfig& m = c.layer;
  if (m.rope.scaling != RopeScaling::None || m.shape.max_positions <= 0 || context <= m.shape.max_positions) return false;
  m.rope.scaling = RopeScaling::Yarn;
  m.rope.factor = static_cast<double>(context) / static_cast<double>(m.shape.max_positions);
  m.rope.original_max_positions = m.shape.max_positions;
  m.rope.beta_fast = 32.0;
  m.rope.beta_slow = 1.0;
  m.shape.max_positions = context;
  return true;
}

Eagle3DraftConfig load_eagle3_draft_config(const fs::path& file, const ModelConfig& target) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw ConfigError(file.string(), "", "no such draft config file");
  return parse_eagle3_draft_config(read_json_file(file), file.string(), target);
}

Eagle3DraftWeights random_eagle3_draft_weights(const Eagle3DraftConfig& c, std::uint64_t seed) {
  const ModelShape& s = c.layer.shape;
  const std::int64_t h = s.hidden, features = static_cast<std::int64_t>(c.aux_layers.size()) * c.target_hidden;
  Eagle3DraftWeights w;
  w.fc = {h, features, normal_values(seed, "fc.weight", h * features, 0.0, 0.02)};
  w.hidden_norm.assign(static_cast<std::size_t>(h), 1.0f);
  w.input_norm.assign(static_cast<std::size_t>(h), 1.0f);
  w.q = {s.q_heads * s.head_dim, 2 * h, normal_values(seed, "midlayer.self_attn.q_proj.weight", s.q_heads * s.head_dim * 2 * h, 0.0, 0.02)};
  w.k = {s.kv_heads * s.head_dim, 2 * h, normal_values(seed, "midlayer.self_attn.k_proj.weight", s.kv_heads * s.head_dim * 2 * h, 0.0, 0.02)};
  return w;
}

}  // namespace specontext
