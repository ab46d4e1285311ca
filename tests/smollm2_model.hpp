#pragma once
// Where the set-up step (scripts/fetch_smollm2.sh) puts the real LLM; tests that need it skip
// when it is absent.
#include <filesystem>

namespace specontext::testing {

inline std::filesystem::path smollm2_gguf() {
  return std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / ".." / ".." / "models" / "smollm2-135m-instruct" /
         "SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace specontext::testing
