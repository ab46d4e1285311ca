// specontext tokenize: text to token ids and back with a model's own tokenizer (a .gguf file's
// metadata or a folder's tokenizer.json).
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/integer_list.hpp"
#include "engine/tokenizer.hpp"
#include "sim/config_error.hpp"

namespace specontext::cli {
namespace {

struct TokenizeFlags {
  std::string model, text, file, ids;
  bool json = false, skip_special = false;
};

void run(const TokenizeFlags& f) {
  const Tokenizer tok = Tokenizer::load(f.model);
  const int given = !f.text.empty() + !f.file.empty() + !f.ids.empty();
  if (given != 1) throw ConfigError("tokenize", "", "give exactly one of --text, --file and --ids");
  if (!f.ids.empty()) {
    const std::vector<int> ids = parse_token_ids(f.ids, "--ids");
    for (int id : ids)
      if (id >= tok.vocab_size())
        throw ConfigError("--ids", "", "token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(tok.vocab_size()) + ")");
    const std::string text = tok.decode(ids, f.skip_special);
    if (f.json) std::cout << nlohmann::json{{"ids", ids}, {"text", text}}.dump(2) << "\n";
    else std::cout << text << "\n";
    return;
  }
  std::string text = f.text;
  if (!f.file.empty()) {
    std::ifstream in(f.file, std::ios::binary);
    if (!in) throw ConfigError(f.file, "", "cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const std::vector<int> ids = tok.encode(text);
  std::vector<std::string> pieces;
  for (int id : ids) pieces.push_back(tok.decode({id}));
  if (f.json) {
    std::cout << nlohmann::json{{"ids", ids}, {"tokens", pieces}, {"count", ids.size()}}.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << ids.size() << " tokens\n";
  for (std::size_t i = 0; i < ids.size(); ++i)
    std::cout << "  " << ids[i] << "\t" << nlohmann::json(pieces[i]).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto f = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "encode text to token ids, or decode ids, with a model's tokenizer");
  cmd->add_option("--model", f->model, "a llama.cpp .gguf file, or a folder holding tokenizer.json")->required();
  cmd->add_option("--text", f->text, "text to encode");
  cmd->add_option("--file", f->file, "file whose bytes to encode");
  cmd->add_option("--ids", f->ids, "comma-separated token ids to decode");
  cmd->add_flag("--skip-special", f->skip_special, "leave special tokens out when decoding --ids");
  cmd->add_flag("--json", f->json, "print JSON instead of a table");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
