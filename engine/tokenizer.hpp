#pragma once
// Byte-level BPE (GPT-2's scheme, used by SmolLM2, Llama 3, Qwen2/Qwen3) that reproduces Hugging
// Face `tokenizers`: added/special tokens are cut out of the text first (leftmost, longest), the rest
// is pre-tokenised (SmolLM2: every digit alone, then GPT-2's regex; Llama 3 and Qwen2 their own
// regexes), each piece's UTF-8 bytes are spelled in GPT-2's byte alphabet and merged by rank.
// Decoding unmaps the alphabet and turns invalid UTF-8 into U+FFFD as Rust's from_utf8_lossy does.
//
// Sources: a llama.cpp GGUF's tokenizer.ggml.* metadata, or a Hugging Face tokenizer.json (with the
// folder's tokenizer_config.json for bos/eos, chat template and add_bos_token when present).
// tokenizer.json's NFC normalizer (Qwen2/Qwen3; alone or in a Sequence) is applied as HF does: added
// tokens with normalized false are cut out of the raw text first, NFC runs on the text between them,
// then normalized added tokens are matched in its output. A Qwen2 GGUF (tokenizer.ggml.pre qwen2,
// deepseek-r1-qwen) gets NFC too, as transformers' GGUF loader gives it. Other normalizers are refused.
// Errors are ConfigError naming the file and the key.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace specontext {

class GgufFile;

// One step of pre-tokenisation; the steps run in order, each splitting every piece the previous made.
enum class PreTokenizeStep {
  IndividualDigits,  // HF Digits(individual_digits=true): every \p{N} character a piece of its own
  Gpt2Regex,         // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3Regex,       // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Qwen2Regex,        // Llama 3's with \p{N} instead of \p{N}{1,3}
};
const char* to_string(PreTokenizeStep s);

// Splits text (UTF-8; invalid bytes count as one "other" character each) into pre-tokens.
std::vector<std::string> pre_tokenize(std::string_view text, const std::vector<PreTokenizeStep>& steps);

// GPT-2's byte <-> printable-character alphabet; the character as UTF-8.
const std::string& byte_to_token_char(std::uint8_t byte);

// Unicode NFC as HF tokenizers computes it: its crate's tables are Unicode 9.0, so characters assigned
// later (Unicode 10.0+) have no decomposition, composition or combining class here either
// (engine/unicode_tables.py). Hangul syllables are composed algorithmically. Invalid UTF-8 bytes pass
// through unchanged, each a starter that nothing composes with. Text that passes the NFC quick check
// (all ASCII, and most text) comes back as it is.
std::string normalize_nfc(std::string_view text);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

class Tokenizer {
 public:
  // A .gguf file, or a folder holding tokenizer.json (or the tokenizer.json itself).
  static Tokenizer load(const std::filesystem::path& model);
  static Tokenizer from_gguf(const GgufFile& file);
  static Tokenizer from_tokenizer_json(const std::filesystem::path& path);

  // Ids for text; added tokens in the text become their ids. Adds no BOS/EOS (see add_bos()).
  std::vector<int> encode(std::string_view text) const;
  // Text for ids; skip_special drops special added tokens. An id outside the vocabulary is an error
  // (std::invalid_argument), where HF would drop it silently.
  std::string decode(const std::vector<int>& ids, bool skip_special = false) const;

  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }
  // The token as the vocabulary spells it (byte alphabet for model tokens, plain text for added ones).
  const std::string& token(int id) const;
  std::optional<int> find(std::string_view token) const;
  bool is_special(int id) const;
  bool is_added(int id) const;
  // Whether the byte has a token of its own. SmolLM2 lacks 21 (bytes UTF-8 never uses, a few control
  // characters); like HF, encode() drops such bytes unless the BPE model names an unk token.
  bool byte_has_token(std::uint8_t byte) const { return byte_ids_[byte] >= 0; }

  int bos_id() const { return bos_id_; }  // -1 where none is given
  int eos_id() const { return eos_id_; }
  int unk_id() const { return unk_id_; }
  int pad_id() const { return pad_id_; }
  // Whether HF's encode with add_special_tokens would put bos_id() first: tokenizer_config.json's
  // add_bos_token if it has one, else whether tokenizer.json's post-processor template starts with a
  // special token (Llama 3); a GGUF's tokenizer.ggml.add_bos_token.
  bool add_bos() const { return add_bos_; }
  const std::string& chat_template() const { return chat_template_; }
  const std::vector<PreTokenizeStep>& pre_tokenizer() const { return steps_; }
  // Whether encode() applies NFC before pre-tokenising (tokenizer.json's normalizer).
  bool applies_nfc() const { return nfc_; }
  const std::string& source() const { return source_; }

 private:
  struct AddedToken {
    int id = 0;
    std::string content;
    bool special = false;
    bool normalized = false;  // HF: matched in the normaliser's output rather than in the raw text
  };
  struct SplitToken {  // an added token as encode() matches it
    int id = 0;
    std::string text;
  };
  struct Merge {
    int rank = 0;
    int merged = 0;
  };

  Tokenizer() = default;
  void set_vocab(const std::string& origin, const std::string& field, std::vector<std::string> tokens);
  void add_merge(const std::string& origin, const std::string& field, const std::string& a, const std::string& b);
  void add_token(const std::string& origin, const std::string& field, int id, const std::string& content, bool special,
                 bool normalized);
  void finish();
  void bpe(std::string_view piece, std::vector<int>& out) const;

  std::string source_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int> token_to_id_;
  std::unordered_map<std::uint64_t, Merge> merges_;  // key: (left id << 32) | right id
  std::vector<AddedToken> added_;                    // as listed
  std::vector<SplitToken> split_raw_;                // normalized false: matched in the raw text, longest first
  std::vector<SplitToken> split_normalized_;         // normalized true: by normalised content, longest first
  std::vector<std::uint8_t> added_kind_;             // per id: 0 model token, 1 added, 2 added special
  std::vector<int> byte_ids_;                        // id of each byte's single-character token, -1 if none
  std::vector<PreTokenizeStep> steps_;
  bool ignore_merges_ = false;
  bool nfc_ = false;
  int bos_id_ = -1, eos_id_ = -1, unk_id_ = -1, pad_id_ = -1;
  int bpe_unk_id_ = -1;  // HF's BPE model.unk_token, which a GGUF does not carry (transformers leaves it unset)
  bool add_bos_ = false;
  std::string chat_template_;
};

}  // namespace specontext
