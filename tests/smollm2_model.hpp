#pragma once
// Where the set-up step (scripts/fetch_smollm2.sh) puts the real LLM, and where our committed EAGLE-3
// draft of it lives; tests that need the LLM skip when it is absent.
#include <filesystem>

namespace specontext::testing {

inline std::filesystem::path smollm2_gguf() {
  return std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / ".." / ".." / "models" / "smollm2-135m-instruct" /
         "SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline std::filesystem::path smollm2_draft_dir() {
  return std::filesystem::path(SPECONTEXT_FIXTURES_DIR) / ".." / ".." / "models" / "smollm2-eagle3";
}

}  // namespace specontext::testing
