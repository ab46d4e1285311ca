#include "engine/heldout_corpus.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "sim/config_error.hpp"

namespace specontext {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Whether `before` (text up to a whitespace run) ends a sentence: . ! or ? with closing quotes or
// brackets after it, but not a title or an initial ("Mr. Darcy", "J. Smith"). `next` is the
// character after the whitespace run: a lower-case letter there means the sentence goes on.
bool ends_sentence(std::string_view before, char next) {
  if (next >= 'a' && next <= 'z') return false;
  static const std::array<std::string_view, 7> closers = {"\"", "'", ")", "]", "\xE2\x80\x9D", "\xE2\x80\x99", "\xC2\xBB"};  // ” ’ »
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view c : closers)
      if (ends_with(before, c)) {
        before.remove_suffix(c.size());
        stripped = true;
      }
  }
  if (before.empty() || (before.back() != '.' && before.back() != '!' && before.back() != '?')) return false;
  if (before.back() != '.') return true;
  before.remove_suffix(1);
  std::size_t word = before.size();
  while (word > 0 && !is_ascii_space(before[word - 1])) --word;
  const std::string_view last = before.substr(word);
  static const std::array<std::string_view, 6> titles = {"Mr", "Mrs", "Ms", "Dr", "St", "Messrs"};
  if (std::find(titles.begin(), titles.end(), last) != titles.end()) return false;
  return !(last.size() == 1 && last[0] >= 'A' && last[0] <= 'Z');
}

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_ascii_space(s[b])) ++b;
  while (e > b && is_ascii_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// MANIFEST.json: a list of {"file", "bytes", ...}, or an object holding it as "documents" or
// "files". Returns file name -> bytes.
std::map<std::string, std::uintmax_t> read_manifest(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string(), "", "cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path.string(), "", std::string("not valid JSON: ") + e.what());
  }
  if (j.is_object()) j = j.contains("documents") ? j["documents"] : j.value("files", nlohmann::json());
  if (!j.is_array()) throw ConfigError(path.string(), "", "expected a list of documents (or an object holding it as \"documents\")");
  std::map<std::string, std::uintmax_t> bytes;
  for (const nlohmann::json& e : j) {
    if (!e.is_object() || !e.contains("file") || !e["file"].is_string()) throw ConfigError(path.string(), "file", "every entry needs a file name");
    if (!e.contains("bytes") || !e["bytes"].is_number_unsigned())
      throw ConfigError(path.string(), "bytes", "entry " + e["file"].get<std::string>() + " needs its size in bytes");
    bytes[e["file"].get<std::string>()] = e["bytes"].get<std::uintmax_t>();
  }
  return bytes;
}

}  // namespace

std::vector<TextUnit> split_units(std::string_view text) {
  std::vector<TextUnit> units;
  if (text.empty()) return units;
  TextUnit current{0, 0, true};
  for (std::size_t i = 1; i < text.size(); ++i) {
    if (!is_ascii_space(text[i]) || is_ascii_space(text[i - 1])) continue;
    std::size_t run_end = i;
    while (run_end < text.size() && is_ascii_space(text[run_end])) ++run_end;
    const std::string_view run = text.substr(i, run_end - i);
    const auto newlines = std::count(run.begin(), run.end(), '\n');
    const bool sentence = newlines >= 2 || ends_sentence(text.substr(0, i), run_end < text.size() ? text[run_end] : '\0');
    if (!sentence && newlines == 0) continue;
    current.end = i;
    units.push_back(current);
    current = TextUnit{i, 0, sentence};
  }
  current.end = text.size();
  units.push_back(current);
  return units;
}

bool is_prose_source(std::string_view source) { return source == "austen" || source == "kjv" || source == "web"; }

HeldoutCorpus HeldoutCorpus::load(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ConfigError(dir.string(), "", "no such folder of held-out documents (--heldout)");
  HeldoutCorpus corpus;
  corpus.dir_ = dir;
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  if (files.empty()) throw ConfigError(dir.string(), "", "holds no held-out documents (<source>--<slug>.txt files)");
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });

  const fs::path manifest_path = dir / "MANIFEST.json";
  const bool has_manifest = fs::exists(manifest_path);
  const std::map<std::string, std::uintmax_t> manifest = has_manifest ? read_manifest(manifest_path) : std::map<std::string, std::uintmax_t>{};
  for (const fs::path& path : files) {
    HeldoutDocument doc;
    doc.file = path.filename().string();
    const std::size_t dashes = doc.file.find("--");
    if (dashes == 0 || dashes == std::string::npos)
      throw ConfigError(path.string(), "", "a held-out document's name must be <source>--<slug>.txt");
    doc.source = doc.file.substr(0, dashes);
    if (has_manifest) {
      const auto listed = manifest.find(doc.file);
      if (listed == manifest.end()) throw ConfigError(manifest_path.string(), "file", doc.file + " is in the folder but not listed");
      if (listed->second != fs::file_size(path))
        throw ConfigError(manifest_path.string(), "bytes",
                          doc.file + " has " + std::to_string(fs::file_size(path)) + " bytes, the manifest says " + std::to_string(listed->second));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(path.string(), "", "cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    doc.text = trim(text.str());
    if (doc.text.empty()) throw ConfigError(path.string(), "", "the document is empty");
    doc.units = split_units(doc.text);
    corpus.documents_.push_back(std::move(doc));
  }
  for (const auto& [file, bytes] : manifest)
    if (!fs::exists(dir / file)) throw ConfigError(manifest_path.string(), "file", file + " is listed but missing");
  return corpus;
}

std::vector<std::size_t> HeldoutCorpus::select(bool prose_only) const {
  std::vector<std::size_t> picked;
  for (std::size_t i = 0; i < documents_.size(); ++i)
    if (!prose_only || is_prose_source(documents_[i].source)) picked.push_back(i);
  if (picked.empty()) throw ConfigError(dir_.string(), "", "holds no prose documents (austen--*, kjv--*, web--*.txt) to make a haystack from");
  return picked;
}

}  // namespace specontext
