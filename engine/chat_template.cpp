#include "engine/chat_template.hpp"

#include "sim/config_error.hpp"

namespace specontext {

std::string render_chat_prompt(const std::string& tmpl, const std::string& user_message, const std::string& origin) {
  static const std::string start = "<|im_start|>", end = "<|im_end|>";
  if (tmpl.find(start) == std::string::npos || tmpl.find(end) == std::string::npos)
    throw ConfigError(origin, "tokenizer.chat_template", "only ChatML templates (<|im_start|> ... <|im_end|>) are supported by --chat");
  std::string out;
  // The default system turn, written literally in the template ("<|im_start|>system\n...<|im_end|>").
  const std::string system_open = start + "system\n";
  if (const auto s = tmpl.find(system_open); s != std::string::npos) {
    const auto e = tmpl.find(end, s);
    if (e != std::string::npos) out += tmpl.substr(s, e - s) + end + "\n";
  }
  out += start + "user\n" + user_message + end + "\n" + start + "assistant\n";
  return out;
}

}  // namespace specontext
