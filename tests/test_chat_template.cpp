// --chat prompts rendered as the model's ChatML template renders them (worked out by hand from
// the template's Jinja source).
#include <gtest/gtest.h>

#include "engine/chat_template.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template, verbatim from its GGUF.
const char* kSmolLM2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplate, SmolLM2OneUserTurnWithItsDefaultSystemMessage) {
  EXPECT_EQ(render_chat_prompt(kSmolLM2Template, "What is 2+2?", "smollm2.gguf"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMlWithoutADefaultSystemMessage) {
  const char* plain = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}";
  EXPECT_EQ(render_chat_prompt(plain, "hi", "x"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, OtherTemplatesAreRefusedNamingTheField) {
  try {
    render_chat_prompt("{{ bos_token }}[INST] {{ m }} [/INST]", "hi", "mistral.gguf");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("mistral.gguf: field 'tokenizer.chat_template'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace specontext
