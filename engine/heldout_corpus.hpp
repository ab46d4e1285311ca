#pragma once
// The held-out documents long-context tasks are built from: a folder (models/heldout/) of whole
// documents as UTF-8 `<source>--<slug>.txt` files, beside a MANIFEST.json that lists each with its
// size. Sources: austen, kjv, web (prose: they make haystacks), linux, python (code: perplexity).
//
// Documents are cut into units just before whitespace, because there the byte-level BPE
// pre-tokenisers (GPT-2's regex at least, SmolLM2's) never join a piece across the cut: encoding
// unit by unit gives the ids of encoding the joined text, and a task can count tokens unit by unit.
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace specontext {

// [begin, end) of a document's text. Every unit but a document's first starts with whitespace.
struct TextUnit {
  std::size_t begin = 0, end = 0;
  // The unit begins a sentence (after . ! or ?, closing quotes allowed) or a paragraph (after a
  // blank line): where a needle may go. Other units begin at a line break.
  bool sentence_start = false;
};

// The ASCII whitespace units are cut before.
inline bool is_ascii_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'; }

// Cuts before the whitespace that ends a sentence, a paragraph or a line.
std::vector<TextUnit> split_units(std::string_view text);

struct HeldoutDocument {
  std::string file;    // "austen--emma.txt"
  std::string source;  // "austen"
  std::string text;    // the file's text without leading and trailing whitespace
  std::vector<TextUnit> units;
};

bool is_prose_source(std::string_view source);

class HeldoutCorpus {
 public:
  // Every *.txt in the folder, sorted by file name (the order must not depend on the file
  // system). Where MANIFEST.json exists, each file must be listed there with its byte count (a
  // file changed by a checkout, e.g. line endings, would change every task built from it).
  // Errors (no folder, no documents, a misnamed or unlisted file) are ConfigError naming the path.
  static HeldoutCorpus load(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<HeldoutDocument>& documents() const { return documents_; }
  // Indices of the documents with a prose source (or all of them); a ConfigError if there are none.
  std::vector<std::size_t> select(bool prose_only) const;

 private:
  std::filesystem::path dir_;
  std::vector<HeldoutDocument> documents_;
};

}  // namespace specontext
