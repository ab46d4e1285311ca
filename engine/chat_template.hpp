#pragma once
// Chat prompts for `generate --chat`. We do not run Jinja: we recognise ChatML templates
// (<|im_start|>role\ncontent<|im_end|>\n, SmolLM2 and Qwen) and render a one-turn user prompt with
// the generation prompt, including the default system message the template inserts when the
// conversation has none.
#include <string>

namespace specontext {

// `origin` names the file the template came from (for errors: an unrecognised template).
std::string render_chat_prompt(const std::string& chat_template, const std::string& user_message, const std::string& origin);

}  // namespace specontext
