// specontext generate: run a checkpoint (or random weights at a config's shape) on the CPU
// reference or the CUDA backend, R requests together, and report tokens and timing; under a KV
// selection policy (cli/policy_flags.hpp) the JSON also has "overlap_rate" and, on CUDA,
// "h2d_bytes_per_step" and "offloaded_layers" (at the end).
#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/integer_list.hpp"
#include "cli/model_loading.hpp"
#include "cli/policy_flags.hpp"
#include "engine/chat_template.hpp"
#include "engine/generator.hpp"
#include "engine/tokenizer.hpp"
#include "sim/config_error.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cuda_backend.hpp"
#endif

namespace specontext::cli {
namespace {

struct GenerateFlags {
  std::string model, backend = "cpu", prompt_ids, prompt, prompt_file;
  int max_new = 16, requests = 1;
  float temperature = 0.0f, top_p = 1.0f;
  std::uint64_t seed = 0;
  bool random_weights = false, json = false, no_graph = false, chat = false;
  PolicyFlags sparse;
};

// The prompt's token ids: given as ids, or text (--prompt / --prompt-file, through --chat's
// template when asked) encoded by the model's tokenizer.
std::vector<int> prompt_ids(const GenerateFlags& f, std::optional<Tokenizer>& tokenizer) {
  const int given = !f.prompt_ids.empty() + !f.prompt.empty() + !f.prompt_file.empty();
  if (given != 1) throw ConfigError("--prompt", "", "give exactly one of --prompt-ids, --prompt and --prompt-file");
  if (!f.prompt_ids.empty()) {
    if (f.chat) throw ConfigError("--chat", "", "needs --prompt or --prompt-file (text), not --prompt-ids");
    return parse_token_ids(f.prompt_ids, "--prompt-ids");
  }
  std::string text = f.prompt;
  if (!f.prompt_file.empty()) {
    std::ifstream in(f.prompt_file, std::ios::binary);
    if (!in) throw ConfigError(f.prompt_file, "", "cannot open the prompt file");
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  tokenizer = Tokenizer::load(f.model);
  if (f.chat) text = render_chat_prompt(tokenizer->chat_template(), text, tokenizer->source());
  std::vector<int> ids;
  if (tokenizer->add_bos() && tokenizer->bos_id() >= 0) ids.push_back(tokenizer->bos_id());
  const std::vector<int> body = tokenizer->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (ids.empty()) throw ConfigError("--prompt", "", "the prompt encodes to no tokens");
  return ids;
}

void run(const GenerateFlags& f) {
  const ModelConfig config = load_model_config(f.model);
  std::optional<Tokenizer> tokenizer;
  const std::vector<int> prompt = prompt_ids(f, tokenizer);
  for (int id : prompt)
    if (id >= config.shape.vocab)
      throw ConfigError("--prompt-ids", "", "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(config.shape.vocab));
  const std::int64_t context = static_cast<std::int64_t>(prompt.size()) + f.max_new;
  check_model_context(config, context, "the prompt and --max-new");
  PolicyRun run = make_policy_run({.model = f.model, .backend = f.backend, .requests = f.requests, .context = context,
                                   .random_weights = f.random_weights, .seed = f.seed, .cuda_graph = !f.no_graph,
                                   .prefill_cache = {}},  // none: generate prefills its prompt
                                  f.sparse, config);
  Backend& backend = run.run();
  GenerateOptions o;
  o.max_new = f.max_new;
  o.sampling = {f.temperature, f.top_p, f.seed};
  o.eos_token_ids = config.eos_token_ids;
  const GenerateResult r = generate(backend, std::vector<std::vector<int>>(static_cast<std::size_t>(f.requests), prompt), o);
  const double total_s = r.prefill_s + r.decode_s;
  if (f.json) {
    nlohmann::json j = {{"backend", f.backend}, {"requests", f.requests}, {"prompt_tokens", prompt.size()},
                        {"tokens", r.tokens.size() == 1 ? nlohmann::json(r.tokens[0]) : nlohmann::json(r.tokens)},
                        {"ttft_ms", r.ttft_s * 1e3}, {"tpot_ms", r.tpot_s() * 1e3}, {"decode_tokens_per_s", r.decode_tokens_per_s()},
                        {"tokens_per_s", total_s > 0 ? static_cast<double>(r.generated()) / total_s : 0.0}};
    if (tokenizer) j["text"] = tokenizer->decode(r.tokens[0], true);
    const std::optional<double> overlap = backend.overlap_rate();
    j["policy"] = f.sparse.policy;
    j["overlap_rate"] = overlap ? nlohmann::json(*overlap) : nlohmann::json(nullptr);
    j["h2d_bytes_per_step"] = nullptr;
#if defined(SPECONTEXT_HAVE_CUDA)
    if (auto* cuda = dynamic_cast<CudaBackend*>(&backend); cuda && run.policy != SelectionPolicy::Full) {
      const double steps = std::max(1.0, static_cast<double>(f.max_new - 1));  // decode steps after the prefill's token
      j["h2d_bytes_per_step"] = cuda->take_h2d_bytes() / steps;
      j["offloaded_layers"] = cuda->offloaded_layers();
    }
#endif
    std::cout << j.dump(2) << "\n";
    return;
  }
  for (std::size_t i = 0; i < r.tokens.size(); ++i) {
    std::cout << "request " << i << ":";
    for (int t : r.tokens[i]) std::cout << " " << t;
    std::cout << "\n";
    if (tokenizer) std::cout << "  text: " << tokenizer->decode(r.tokens[i], true) << "\n";
  }
  std::cout << "TTFT " << fixed(r.ttft_s * 1e3, 2) << " ms, TPOT " << fixed(r.tpot_s() * 1e3, 3) << " ms, decode "
            << fixed(r.decode_tokens_per_s(), 1) << " tokens/s (" << f.backend << ")\n";
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "generate tokens from a checkpoint on the CPU reference or the CUDA backend");
  cmd->add_option("--model", f->model, "checkpoint folder (config.json + safetensors), a llama.cpp .gguf file, or a config.json with --random-weights")->required();
  cmd->add_option("--backend", f->backend, "cpu (fp32 reference) or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--prompt-ids", f->prompt_ids, "prompt as comma-separated token ids");
  cmd->add_option("--prompt", f->prompt, "prompt text, encoded by the model's tokenizer (GGUF metadata or tokenizer.json)");
  cmd->add_option("--prompt-file", f->prompt_file, "a file whose text is the prompt");
  cmd->add_flag("--chat", f->chat, "wrap the prompt text as one user turn of the model's (ChatML) chat template");
  cmd->add_option("--max-new", f->max_new, "tokens to generate per request")->capture_default_str();
  cmd->add_option("--requests", f->requests, "requests decoded together (the prompt repeated)")->capture_default_str();
  cmd->add_option("--temperature", f->temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", f->top_p, "nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", f->seed, "sampling seed (and the random weights' seed)")->capture_default_str();
  cmd->add_flag("--random-weights", f->random_weights, "seeded random weights at the config's shape instead of a checkpoint");
  cmd->add_flag("--no-graph", f->no_graph, "CUDA: launch the decode step kernel by kernel (per-layer NVTX ranges) instead of a CUDA graph");
  cmd->add_flag("--json", f->json, "print JSON");
  f->sparse.add_to(*cmd);
  cmd->callback([f]() {
    if (f->requests <= 0) throw ConfigError("--requests", "", "must be positive");
    run(*f);
  });
}

}  // namespace specontext::cli
