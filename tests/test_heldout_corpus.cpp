// The held-out corpus: documents cut into units where a needle or a window may start, and a
// folder that is missing, empty, misnamed or disagrees with its MANIFEST.json failing clearly.
#include <gtest/gtest.h>

#include <fstream>

#include "engine/heldout_corpus.hpp"
#include "sim/config_error.hpp"
#include "tests/temp_dir.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::vector<std::string> unit_texts(const std::string& text, std::vector<bool>* sentence = nullptr) {
  std::vector<std::string> out;
  for (const TextUnit& u : split_units(text)) {
    out.push_back(text.substr(u.begin, u.end - u.begin));
    if (sentence) sentence->push_back(u.sentence_start);
  }
  return out;
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected a ConfigError with '" << needle << "'";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(HeldoutCorpus, UnitsStartAtSentencesParagraphsAndLines) {
  const std::string text = "Mr. Darcy came. She said, \"Yes.\" Then J. Smith\nleft.  It rained! etc. and so\n\nChapter 2\n\n\"Why?\" she asked.";
  std::vector<bool> sentence;
  const std::vector<std::string> units = unit_texts(text, &sentence);
  EXPECT_EQ(units, (std::vector<std::string>{"Mr. Darcy came.", " She said, \"Yes.\"", " Then J. Smith", "\nleft.", "  It rained! etc. and so",
                                             "\n\nChapter 2", "\n\n\"Why?\" she asked."}));
  EXPECT_EQ(sentence, (std::vector<bool>{true, true, true, false, true, true, true}));
  std::string joined;
  for (const std::string& u : units) joined += u;
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(split_units("").empty());
}

TEST(HeldoutCorpus, LoadsSortedAndChecksTheManifest) {
  TempDir dir("heldout");
  std::ofstream(dir.path() / "web--b.txt") << "\n  Second book.\n";
  std::ofstream(dir.path() / "austen--a.txt") << "First book.";
  std::ofstream(dir.path() / "python--c.py.txt") << "x = 1\n";
  std::ofstream(dir.path() / "README.md") << "not a document";
  const HeldoutCorpus corpus = HeldoutCorpus::load(dir.path());
  ASSERT_EQ(corpus.documents().size(), 3u);
  EXPECT_EQ(corpus.documents()[0].file, "austen--a.txt");
  EXPECT_EQ(corpus.documents()[1].source, "python");
  EXPECT_EQ(corpus.documents()[2].text, "Second book.");
  EXPECT_EQ(corpus.select(true), (std::vector<std::size_t>{0, 2}));
  EXPECT_EQ(corpus.select(false).size(), 3u);

  std::ofstream(dir.path() / "MANIFEST.json") << R"([{"file": "austen--a.txt", "bytes": 11}, {"file": "web--b.txt", "bytes": 16},
                                                     {"file": "python--c.py.txt", "bytes": 6}])";
  EXPECT_EQ(HeldoutCorpus::load(dir.path()).documents().size(), 3u);
  std::ofstream(dir.path() / "austen--a.txt") << "First book, changed.";
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "field 'bytes': austen--a.txt has 20 bytes, the manifest says 11");
  std::ofstream(dir.path() / "MANIFEST.json") << R"([{"file": "austen--a.txt", "bytes": 20}, {"file": "web--b.txt", "bytes": 16}])";
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "python--c.py.txt is in the folder but not listed");
  std::ofstream(dir.path() / "MANIFEST.json") << R"([{"file": "austen--a.txt", "bytes": 20}, {"file": "web--b.txt", "bytes": 16},
                                                     {"file": "python--c.py.txt", "bytes": 6}, {"file": "kjv--gone.txt", "bytes": 6}])";
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "kjv--gone.txt is listed but missing");
}

TEST(HeldoutCorpus, BadFoldersNameThePath) {
  TempDir dir("heldout");
  expect_error([&] { HeldoutCorpus::load(dir.path() / "nope"); }, "nope: no such folder");
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "holds no held-out documents");
  std::ofstream(dir.path() / "nosource.txt") << "text";
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "nosource.txt: a held-out document's name must be <source>--<slug>.txt");
  fs::remove(dir.path() / "nosource.txt");
  std::ofstream(dir.path() / "linux--empty.c.txt") << " \n";
  expect_error([&] { HeldoutCorpus::load(dir.path()); }, "linux--empty.c.txt: the document is empty");
  std::ofstream(dir.path() / "linux--empty.c.txt") << "int x;\n";
  expect_error([&] { HeldoutCorpus::load(dir.path()).select(true); }, "holds no prose documents");
}

}  // namespace
}  // namespace specontext
