// Long-context task instances: the same seed gives the same ids and another seed others, prompts
// fill the context to within a word, each needle sits at its depth, the answers are in the prompt
// (distinct multikey names and numbers, a vartrack chain that resolves to the number), windows have
// the asked lengths, scoring takes the first number, bad options name their flag, and the dump
// holds the ids. Built on a synthetic corpus with a byte tokenizer; with SmolLM2's tokenizer (where
// its GGUF is present) also on the committed corpus, where the ids must equal the tokenizer's
// encoding of the prompt text.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "engine/gguf.hpp"
#include "engine/long_context_tasks.hpp"
#include "engine/task_dump.hpp"
#include "sim/config_error.hpp"
#include "tests/heldout_fixture.hpp"
#include "tests/temp_dir.hpp"
#include "tests/smollm2_model.hpp"

namespace specontext {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const fs::path kSmolLM2 = testing::smollm2_gguf();

const HeldoutCorpus& synthetic_corpus() {
  static const TempDir dir("heldout");
  static const HeldoutCorpus corpus = (testing::write_heldout(dir.path()), HeldoutCorpus::load(dir.path()));
  return corpus;
}

const Tokenizer& bytes() {
  static const TempDir dir("byte-tokenizer");
  static const Tokenizer t = testing::byte_tokenizer(dir.path());
  return t;
}

TaskOptions options(TaskKind kind, std::int64_t context, int trials = 3, std::uint64_t seed = 7) {
  TaskOptions o;
  o.kind = kind;
  o.context = context;
  o.trials = trials;
  o.seed = seed;
  o.generate = context / 4;
  return o;
}

std::vector<int> slice(const std::vector<int>& v, std::int64_t begin, std::int64_t count) {
  return std::vector<int>(v.begin() + begin, v.begin() + begin + count);
}

// Every property an instance of an answer task must have, for any tokenizer and corpus.
// `word` bounds the tokens of one word (how far short of the limit a prompt may stop).
void check_answer_instance(const TaskOptions& o, const TaskInstance& inst, const Tokenizer& tok, std::int64_t word) {
  SCOPED_TRACE("trial " + std::to_string(inst.trial));
  const std::int64_t limit = o.context - o.max_new, size = static_cast<std::int64_t>(inst.prompt.size());
  EXPECT_LE(size, limit);
  EXPECT_GE(size, limit - word);
  EXPECT_EQ(inst.answer.size(), 5u);
  EXPECT_EQ(first_number(inst.answer), inst.answer);
  EXPECT_TRUE(inst.forced.empty());
  EXPECT_FALSE(inst.documents.empty());
  ASSERT_FALSE(inst.needles.empty());

  // Each needle's tokens are where it says, and it sits at its depth: within 2% of the prompt of
  // the haystack position that depth names.
  std::int64_t needle_tokens = 0;
  for (const Needle& n : inst.needles) needle_tokens += n.tokens;
  const double haystack = static_cast<double>(inst.haystack_end - inst.haystack_begin - needle_tokens);
  std::int64_t before = 0;
  for (const Needle& n : inst.needles) {
    EXPECT_EQ(slice(inst.prompt, n.position, n.tokens), tok.encode(n.text)) << n.text;
    const double expected = static_cast<double>(inst.haystack_begin + before) + n.depth * haystack;
    EXPECT_LE(std::abs(static_cast<double>(n.position) - expected), 0.02 * static_cast<double>(size)) << "depth " << n.depth;
    EXPECT_NEAR(n.actual_depth, n.depth, 0.02 * static_cast<double>(size) / haystack);
    EXPECT_TRUE(n.text.front() == ' ' || n.text.front() == '\n') << n.text;
    before += n.tokens;
  }
  const std::string text = tok.decode(inst.prompt, true);
  EXPECT_NE(text.find("\n\n" + inst.question), std::string::npos);
  EXPECT_EQ(text.substr(text.size() - inst.question.size()), inst.question);
}

// VAR statements in prompt order resolve the asked variable to a number.
std::string resolve_chain(const std::string& prompt, const std::string& question) {
  std::map<std::string, std::string> value;
  const std::regex statement(R"(VAR ([A-Z]{3}) = (VAR ([A-Z]{3})|(\d+))\.)");
  for (auto it = std::sregex_iterator(prompt.begin(), prompt.end(), statement); it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    value[m[1]] = m[4].matched ? m[4].str() : value.at(m[3]);
  }
  std::smatch asked;
  if (!std::regex_search(question, asked, std::regex(R"(VAR ([A-Z]{3})\?)"))) return "";
  return value.count(asked[1]) ? value[asked[1]] : "";
}

TEST(LongContextTasks, SameSeedSameIdsOtherSeedOthers) {
  for (TaskKind kind : {TaskKind::Passkey, TaskKind::MultiKey, TaskKind::VarTrack, TaskKind::Perplexity, TaskKind::Fidelity}) {
    SCOPED_TRACE(to_string(kind));
    const auto a = build_tasks(options(kind, 1024), synthetic_corpus(), bytes());
    const auto b = build_tasks(options(kind, 1024), synthetic_corpus(), bytes());
    const auto c = build_tasks(options(kind, 1024, 3, 8), synthetic_corpus(), bytes());
    ASSERT_EQ(a.size(), 3u);
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].prompt, b[i].prompt);
      EXPECT_EQ(a[i].forced, b[i].forced);
      EXPECT_EQ(a[i].answer, b[i].answer);
      EXPECT_NE(a[i].prompt, c[i].prompt);
    }
    EXPECT_NE(a[0].prompt, a[1].prompt);
  }
}

TEST(LongContextTasks, PasskeyFillsTheContextWithTheNeedleAtItsDepth) {
  for (std::int64_t context : {512, 2048}) {
    const TaskOptions o = options(TaskKind::Passkey, context, 5);
    const auto tasks = build_tasks(o, synthetic_corpus(), bytes());
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      const TaskInstance& inst = tasks[t];
      check_answer_instance(o, inst, bytes(), 12);
      ASSERT_EQ(inst.needles.size(), 1u);
      EXPECT_DOUBLE_EQ(inst.needles[0].depth, static_cast<double>(t) / 4);  // spread evenly over 0..1
      EXPECT_EQ(inst.prompt.front(), 256);                                 // BOS
      const std::string& k = inst.answer;
      EXPECT_EQ(inst.needles[0].text.substr(inst.needles[0].text.find('T')), "The pass key is " + k + ". Remember it. " + k + " is the pass key.");
      EXPECT_EQ(inst.question, "Question: What is the pass key?\nAnswer: The pass key is");
    }
  }
}

TEST(LongContextTasks, MultikeyNamesAndNumbersAreDistinct) {
  TaskOptions o = options(TaskKind::MultiKey, 2048, 4);
  o.keys = 6;
  for (const TaskInstance& inst : build_tasks(o, synthetic_corpus(), bytes())) {
    check_answer_instance(o, inst, bytes(), 12);
    ASSERT_EQ(inst.needles.size(), 6u);
    std::set<std::string> names, numbers;
    const std::regex needle(R"(The pass key for ([A-Za-z]+) is (\d{5})\.)");
    for (const Needle& n : inst.needles) {
      std::smatch m;
      ASSERT_TRUE(std::regex_search(n.text, m, needle)) << n.text;
      names.insert(m[1]);
      numbers.insert(m[2]);
      if (&n == &inst.needles[static_cast<std::size_t>(inst.asked)]) {
        EXPECT_EQ(m[2], inst.answer);
        EXPECT_EQ(inst.question, "Question: What is the pass key for " + m[1].str() + "?\nAnswer: The pass key for " + m[1].str() + " is");
      }
    }
    EXPECT_EQ(names.size(), 6u);
    EXPECT_EQ(numbers.size(), 6u);
    for (std::size_t i = 1; i < inst.needles.size(); ++i) EXPECT_LE(inst.needles[i - 1].depth, inst.needles[i].depth);
  }
}

TEST(LongContextTasks, VartrackChainResolvesToTheNumber) {
  TaskOptions o = options(TaskKind::VarTrack, 2048, 4);
  for (int hops : {5, 30}) {  // 31 statements crowd each other: the chain must stay in order
    o.hops = hops;
    for (const TaskInstance& inst : build_tasks(o, synthetic_corpus(), bytes())) {
      check_answer_instance(o, inst, bytes(), 12);
      EXPECT_EQ(inst.needles.size(), static_cast<std::size_t>(hops + 1));
      EXPECT_EQ(resolve_chain(bytes().decode(inst.prompt, true), inst.question), inst.answer);
    }
  }
}

TEST(LongContextTasks, WindowsHaveTheAskedLengths) {
  TaskOptions o = options(TaskKind::Perplexity, 1000, 4);
  for (std::int64_t prefix : {0, 300}) {
    o.prefix = prefix;
    for (const TaskInstance& inst : build_tasks(o, synthetic_corpus(), bytes())) {
      EXPECT_EQ(static_cast<std::int64_t>(inst.prompt.size()), prefix ? prefix : 500);
      EXPECT_EQ(static_cast<std::int64_t>(inst.prompt.size() + inst.forced.size()), 1000);
      EXPECT_EQ(inst.prompt.front(), 256);
      // the window is held-out text (of its first document, up to a document's end)
      const std::string text = bytes().decode(slice(inst.prompt, 1, 40));
      bool found = false;
      for (const HeldoutDocument& d : synthetic_corpus().documents()) found |= d.file == inst.documents.front() && d.text.find(text) != std::string::npos;
      EXPECT_TRUE(found) << text;
    }
  }
  // trials start in different documents (three here, every source)
  const auto tasks = build_tasks(options(TaskKind::Perplexity, 1000, 3), synthetic_corpus(), bytes());
  EXPECT_EQ((std::set<std::string>{tasks[0].documents[0], tasks[1].documents[0], tasks[2].documents[0]}).size(), 3u);

  const TaskOptions f = options(TaskKind::Fidelity, 1000, 2);
  for (const TaskInstance& inst : build_tasks(f, synthetic_corpus(), bytes())) {
    EXPECT_EQ(static_cast<std::int64_t>(inst.prompt.size()), 750);
    EXPECT_EQ(inst.generate, 250);
    EXPECT_TRUE(inst.forced.empty());  // the dense model's continuation, made by the evaluator
    EXPECT_NE(inst.documents.front().find("--synthetic.txt"), std::string::npos);  // prose, not python--synthetic.py.txt
  }
}

TEST(LongContextTasks, ScoringTakesTheFirstNumber) {
  EXPECT_EQ(first_number(" 71432. Remember it."), "71432");
  EXPECT_EQ(first_number("no digits"), "");
  EXPECT_TRUE(answer_correct(" 71432.\n", "71432"));
  EXPECT_TRUE(answer_correct("71432 is the pass key", "71432"));
  EXPECT_FALSE(answer_correct(" 7143", "71432"));
  EXPECT_FALSE(answer_correct(" 714321", "71432"));
  EXPECT_FALSE(answer_correct("the key is 1, 71432", "71432"));
  EXPECT_FALSE(answer_correct(" a secret", "71432"));
  EXPECT_FALSE(answer_correct("", ""));
}

void expect_flag_error(const TaskOptions& o, const HeldoutCorpus& corpus, const std::string& needle) {
  try {
    build_tasks(o, corpus, bytes());
    ADD_FAILURE() << "expected a ConfigError with '" << needle << "'";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(LongContextTasks, BadOptionsNameTheFlag) {
  expect_flag_error(options(TaskKind::Passkey, 128), synthetic_corpus(), "--context: 128 tokens leave no room for a haystack");
  expect_flag_error(options(TaskKind::Passkey, 0), synthetic_corpus(), "--context: must be positive");
  expect_flag_error(options(TaskKind::Passkey, 1024, 0), synthetic_corpus(), "--trials: must be positive");
  TaskOptions o = options(TaskKind::MultiKey, 1024);
  o.keys = 25;
  expect_flag_error(o, synthetic_corpus(), "--keys: at most 24");
  o = options(TaskKind::Perplexity, 1024);
  o.prefix = 1024;
  expect_flag_error(o, synthetic_corpus(), "--prefix");
  o = options(TaskKind::Fidelity, 1024);
  o.generate = 1024;
  expect_flag_error(o, synthetic_corpus(), "--generate: 1024 leaves no prompt");
  try {
    parse_task_kind("needle", "TASK");
    ADD_FAILURE() << "no error for an unknown task";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "TASK: unknown task 'needle' (tasks: passkey, multikey, vartrack, perplexity, fidelity)");
  }
  EXPECT_EQ(parse_task_kind("vartrack", "TASK"), TaskKind::VarTrack);

  TempDir small("heldout");
  std::ofstream(small.path() / "austen--short.txt") << "A short book. It ends soon.";
  expect_flag_error(options(TaskKind::Passkey, 4096), HeldoutCorpus::load(small.path()), "hold too little text for --context 4096");
}

TEST(TaskDump, HoldsTheIdsAndWhatScoresThem) {
  TaskOptions o = options(TaskKind::MultiKey, 1024, 2);
  const auto tasks = build_tasks(o, synthetic_corpus(), bytes());
  nlohmann::json j = nlohmann::json::parse(tasks_json(o, tasks, "m.gguf", "heldout", {257}).dump());
  EXPECT_EQ(j["format"], "specontext-eval-tasks");
  EXPECT_EQ(j["task"], "multikey");
  EXPECT_EQ(j["keys"], 4);
  EXPECT_EQ(j["eos_ids"], nlohmann::json::array({257}));
  EXPECT_EQ(j["scoring"], answer_rule());
  ASSERT_EQ(j["instances"].size(), 2u);
  const nlohmann::json& first = j["instances"][0];
  EXPECT_EQ(first["prompt_ids"].get<std::vector<int>>(), tasks[0].prompt);
  EXPECT_EQ(first["answer"], tasks[0].answer);
  EXPECT_EQ(first["asked"], tasks[0].asked);
  EXPECT_EQ(first["needles"][1]["position"], tasks[0].needles[1].position);
  EXPECT_EQ(first["haystack"], nlohmann::json::array({tasks[0].haystack_begin, tasks[0].haystack_end}));
  EXPECT_FALSE(instance_json(tasks[0], o.kind, false).contains("prompt_ids"));

  o = options(TaskKind::Perplexity, 1024, 1);
  const auto windows = build_tasks(o, synthetic_corpus(), bytes());
  j = tasks_json(o, windows, "m.gguf", "heldout", {});
  EXPECT_EQ(j["prefix"], 512);
  EXPECT_EQ(j["instances"][0]["forced_ids"].get<std::vector<int>>(), windows[0].forced);
  EXPECT_FALSE(j.contains("scoring"));
}

// SmolLM2's tokenizer: prompts are the tokenizer's own encoding of their text, on the synthetic
// corpus and on the committed one (whose long verse lines and wrapped prose the depths must cope
// with), at a short and a long context.
TEST(LongContextTasksSmolLM2, PromptsAreTheEncodingOfTheirText) {
  if (!fs::exists(kSmolLM2)) GTEST_SKIP() << kSmolLM2 << " is absent (scripts/fetch_smollm2.sh fetches it)";
  const Tokenizer tok = Tokenizer::from_gguf(GgufFile(kSmolLM2));
  std::vector<const HeldoutCorpus*> corpora = {&synthetic_corpus()};
  std::optional<HeldoutCorpus> committed;
  if (fs::exists(testing::committed_heldout_dir())) corpora.push_back(&committed.emplace(HeldoutCorpus::load(testing::committed_heldout_dir())));
  for (const HeldoutCorpus* corpus : corpora)
    for (std::int64_t context : {512, 4096})
      for (TaskKind kind : {TaskKind::Passkey, TaskKind::MultiKey, TaskKind::VarTrack, TaskKind::Perplexity}) {
        SCOPED_TRACE(std::string(to_string(kind)) + " at " + std::to_string(context) + " in " + corpus->dir().string());
        const TaskOptions o = options(kind, context, 5);
        for (const TaskInstance& inst : build_tasks(o, *corpus, tok)) {
          std::vector<int> all = inst.prompt;
          all.insert(all.end(), inst.forced.begin(), inst.forced.end());
          if (kind != TaskKind::Perplexity) {
            EXPECT_EQ(tok.encode(tok.decode(all)), all);
          }
          if (is_answer_task(kind)) check_answer_instance(o, inst, tok, 6);
          if (kind == TaskKind::VarTrack) {
            EXPECT_EQ(resolve_chain(tok.decode(inst.prompt), inst.question), inst.answer);
          }
        }
      }
}

}  // namespace
}  // namespace specontext
