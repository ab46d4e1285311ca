#include "engine/long_context_tasks.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

#include "kernels/random_hash.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

constexpr std::array<std::string_view, 5> kTaskNames = {"passkey", "multikey", "vartrack", "perplexity", "fidelity"};

// Names for multikey's needles: common first names from many languages, none of them Austen's.
constexpr std::array<std::string_view, 24> kNames = {"Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiroshi",
                                                     "Ines",  "Jonas", "Kavya",  "Lars",   "Mateo",  "Nadia", "Oskar", "Priya",
                                                     "Quentin", "Rosa", "Sven", "Tamsin", "Umar",  "Vera",  "Yusuf", "Zofia"};

// The stream of draws that orders the documents, apart from every trial's own.
constexpr std::uint64_t kDocumentOrderStream = ~0ull;

// One stream of random draws: splitmix64 over a counter, keyed by the seed and the stream.
class Draws {
 public:
  Draws(std::uint64_t seed, std::uint64_t stream) : key_(rng::splitmix64(seed ^ rng::splitmix64(stream))) {}
  std::uint64_t below(std::uint64_t n) { return rng::splitmix64(key_ + counter_++) % n; }  // bias < n / 2^64
  double unit() { return static_cast<double>(rng::splitmix64(key_ + counter_++) >> 11) * 0x1.0p-53; }  // [0, 1)
  int five_digits() { return 10000 + static_cast<int>(below(90000)); }
  template <typename T>
  void shuffle(std::vector<T>& v) {  // Fisher-Yates
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::uint64_t key_, counter_ = 0;
};

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What a piece of haystack begins with, weakest first.
enum class Boundary { Word, Line, Sentence };

struct Piece {
  std::string text;  // starts with whitespace (but the very first)
  std::vector<int> ids;
  Boundary boundary = Boundary::Line;
};

// Haystack tokens before each piece.
std::vector<std::int64_t> offsets_of(const std::vector<Piece>& pieces) {
  std::vector<std::int64_t> offsets;
  std::int64_t total = 0;
  for (const Piece& p : pieces) {
    offsets.push_back(total);
    total += static_cast<std::int64_t>(p.ids.size());
  }
  return offsets;
}

double distance(const std::vector<Piece>& pieces, std::size_t j, double target) {
  return std::abs(static_cast<double>(offsets_of(pieces)[j]) - target);
}

// The piece nearest `target` haystack tokens that begins with at least `at_least` and no later
// than token `last`. The first piece begins a sentence, so there always is one.
std::size_t nearest(const std::vector<Piece>& pieces, double target, std::int64_t last, Boundary at_least) {
  const std::vector<std::int64_t> offsets = offsets_of(pieces);
  std::size_t best = 0;
  for (std::size_t j = 1; j < pieces.size() && offsets[j] <= last; ++j)
    if (pieces[j].boundary >= at_least && std::abs(static_cast<double>(offsets[j]) - target) < std::abs(static_cast<double>(offsets[best]) - target))
      best = j;
  return best;
}

// Held-out text unit by unit from a starting unit onwards, through the next documents of the
// selection (wrapping round), each next document after a blank line.
class UnitStream {
 public:
  // `lead` replaces the whitespace before the first unit.
  UnitStream(const HeldoutCorpus& corpus, const Tokenizer& tokenizer, const std::vector<std::size_t>& selection, std::size_t doc,
             std::size_t unit, std::string lead, std::int64_t context)
      : corpus_(corpus), tokenizer_(tokenizer), selection_(selection), doc_(doc), unit_(unit), lead_(std::move(lead)), context_(context) {
    for (std::size_t d : selection_) units_left_ += corpus_.documents()[d].units.size();
    documents_.push_back(document().file);
  }

  Piece next() {
    if (units_left_-- == 0)
      throw ConfigError(corpus_.dir().string(), "", "the held-out documents hold too little text for --context " + std::to_string(context_));
    if (unit_ == document().units.size()) {
      doc_ = (doc_ + 1) % selection_.size();
      unit_ = 0;
      documents_.push_back(document().file);
    }
    const TextUnit& u = document().units[unit_];
    Piece p;
    p.text = document().text.substr(u.begin, u.end - u.begin);
    p.boundary = u.sentence_start ? Boundary::Sentence : Boundary::Line;
    if (first_) {
      p.text = lead_ + p.text.substr(std::min(p.text.find_first_not_of(" \n\r\t\v\f"), p.text.size()));
      first_ = false;
    } else if (unit_ == 0) {
      p.text = "\n\n" + p.text;
    }
    p.ids = tokenizer_.encode(p.text);
    ++unit_;
    return p;
  }

  const std::vector<std::string>& documents() const { return documents_; }

 private:
  const HeldoutDocument& document() const { return corpus_.documents()[selection_[doc_]]; }

  const HeldoutCorpus& corpus_;
  const Tokenizer& tokenizer_;
  const std::vector<std::size_t>& selection_;
  std::size_t doc_, unit_;
  std::string lead_;
  std::int64_t context_;
  std::size_t units_left_ = 0;
  bool first_ = true;
  std::vector<std::string> documents_;
};

// What a needle task asks of the haystack builder.
struct NeedleSpec {
  std::string sentence;  // without the whitespace before it
  double depth = 0;      // non-decreasing from needle to needle
};

class TaskBuilder {
 public:
  TaskBuilder(const TaskOptions& o, const HeldoutCorpus& corpus, const Tokenizer& tokenizer)
      : o_(o), corpus_(corpus), tokenizer_(tokenizer), prose_(corpus.select(true)), all_(corpus.select(false)) {
    if (tokenizer.add_bos() && tokenizer.bos_id() >= 0) bos_.push_back(tokenizer.bos_id());
    Draws order(o.seed, kDocumentOrderStream);
    order.shuffle(prose_);
    order.shuffle(all_);
  }

  TaskInstance build(int trial) const {
    Draws draws(o_.seed, static_cast<std::uint64_t>(trial));
    TaskInstance inst;
    switch (o_.kind) {
      case TaskKind::Passkey: inst = passkey(trial, draws); break;
      case TaskKind::MultiKey: inst = multikey(trial, draws); break;
      case TaskKind::VarTrack: inst = vartrack(trial, draws); break;
      case TaskKind::Perplexity: inst = perplexity(trial, draws); break;
      case TaskKind::Fidelity: inst = fidelity(trial, draws); break;
    }
    inst.trial = trial;
    return inst;
  }

 private:
  TaskInstance passkey(int trial, Draws& draws) const {
    const std::string key = std::to_string(draws.five_digits());
    const double depth = o_.trials == 1 ? 0.5 : static_cast<double>(trial) / (o_.trials - 1);
    TaskInstance inst = with_haystack(trial, draws,
                                      "There is an important piece of information hidden inside a lot of irrelevant text. "
                                      "Find it and memorize it. I will quiz you about it.",
                                      {{"The pass key is " + key + ". Remember it. " + key + " is the pass key.", depth}},
                                      "Question: What is the pass key?\nAnswer: The pass key is");
    inst.answer = key;
    return inst;
  }

  TaskInstance multikey(int trial, Draws& draws) const {
    std::vector<std::string_view> names(kNames.begin(), kNames.end());
    draws.shuffle(names);
    std::vector<int> numbers;
    while (static_cast<int>(numbers.size()) < o_.keys) {
      const int n = draws.five_digits();
      if (std::find(numbers.begin(), numbers.end(), n) == numbers.end()) numbers.push_back(n);
    }
    std::vector<NeedleSpec> needles;
    for (int i = 0; i < o_.keys; ++i)
      needles.push_back({"The pass key for " + std::string(names[i]) + " is " + std::to_string(numbers[i]) + ".", 0.0});
    assign_sorted_depths(draws, needles);
    const int asked = static_cast<int>(draws.below(static_cast<std::uint64_t>(o_.keys)));
    const std::string name(names[asked]);
    TaskInstance inst = with_haystack(trial, draws,
                                      "There are important pieces of information hidden inside a lot of irrelevant text. "
                                      "Find them and memorize them. I will quiz you about them.",
                                      needles, "Question: What is the pass key for " + name + "?\nAnswer: The pass key for " + name + " is");
    inst.answer = std::to_string(numbers[asked]);
    inst.asked = asked;
    return inst;
  }

  TaskInstance vartrack(int trial, Draws& draws) const {
    std::vector<std::string> vars;
    while (static_cast<int>(vars.size()) <= o_.hops) {
      std::string v;
      for (int i = 0; i < 3; ++i) v += static_cast<char>('A' + draws.below(26));
      if (v != "VAR" && std::find(vars.begin(), vars.end(), v) == vars.end()) vars.push_back(v);
    }
    const std::string value = std::to_string(draws.five_digits());
    std::vector<NeedleSpec> needles = {{"VAR " + vars[0] + " = " + value + ".", 0.0}};
    for (int i = 1; i <= o_.hops; ++i) needles.push_back({"VAR " + vars[i] + " = VAR " + vars[i - 1] + ".", 0.0});
    assign_sorted_depths(draws, needles);
    TaskInstance inst = with_haystack(trial, draws, "Memorize and track the chain of variable assignments hidden in the following text.", needles,
                                      "Question: What is the value of VAR " + vars.back() + "?\nAnswer: The value is");
    inst.answer = value;
    return inst;
  }

  TaskInstance perplexity(int trial, Draws& draws) const {
    const std::int64_t prefix = o_.prefix_tokens();
    TaskInstance inst = with_window(trial, draws, all_, false, o_.context);
    inst.forced.assign(inst.prompt.begin() + prefix, inst.prompt.end());
    inst.prompt.resize(static_cast<std::size_t>(prefix));
    return inst;
  }

  TaskInstance fidelity(int trial, Draws& draws) const {
    TaskInstance inst = with_window(trial, draws, prose_, true, o_.context - o_.generate);
    inst.generate = o_.generate;
    return inst;
  }

  static void assign_sorted_depths(Draws& draws, std::vector<NeedleSpec>& needles) {
    std::vector<double> depths;
    for (std::size_t i = 0; i < needles.size(); ++i) depths.push_back(draws.unit());
    std::sort(depths.begin(), depths.end());
    for (std::size_t i = 0; i < needles.size(); ++i) needles[i].depth = depths[i];
  }

  // Trial t reads from the t-th document of the shuffled selection on, from a random unit.
  UnitStream stream(int trial, Draws& draws, const std::vector<std::size_t>& selection, bool sentence_start, std::string lead) const {
    const std::size_t doc = static_cast<std::size_t>(trial) % selection.size();
    std::vector<std::size_t> starts;
    const std::vector<TextUnit>& units = corpus_.documents()[selection[doc]].units;
    for (std::size_t u = 0; u < units.size(); ++u)
      if (!sentence_start || units[u].sentence_start) starts.push_back(u);
    return UnitStream(corpus_, tokenizer_, selection, doc, starts[draws.below(starts.size())], std::move(lead), o_.context);
  }

  // `length` tokens (BOS first where the tokenizer adds one) of held-out text, cut exactly.
  TaskInstance with_window(int trial, Draws& draws, const std::vector<std::size_t>& selection, bool sentence_start, std::int64_t length) const {
    UnitStream text = stream(trial, draws, selection, sentence_start, "");
    TaskInstance inst;
    inst.prompt = bos_;
    while (static_cast<std::int64_t>(inst.prompt.size()) < length) inst.prompt = concat(std::move(inst.prompt), text.next().ids);
    inst.prompt.resize(static_cast<std::size_t>(length));
    inst.documents = text.documents();
    return inst;
  }

  // BOS, the instruction, a haystack of prose with the needles at their depths, and the question
  // after a blank line: context - max_new tokens, to within a word.
  TaskInstance with_haystack(int trial, Draws& draws, const std::string& instruction, const std::vector<NeedleSpec>& needles,
                             const std::string& question) const {
    const std::vector<int> head = concat(bos_, tokenizer_.encode(instruction));
    const std::vector<int> tail = tokenizer_.encode("\n\n" + question);
    const std::int64_t limit = o_.context - o_.max_new;
    const std::int64_t fixed = static_cast<std::int64_t>(head.size() + tail.size());
    // Each needle is a line of its own: its tokens do not depend on where it goes.
    TaskInstance inst;
    std::vector<std::vector<int>> needle_ids;
    std::int64_t needle_tokens = 0;
    for (const NeedleSpec& spec : needles) {
      Needle n;
      n.text = "\n" + spec.sentence;
      n.depth = spec.depth;
      needle_ids.push_back(tokenizer_.encode(n.text));
      n.tokens = static_cast<std::int64_t>(needle_ids.back().size());
      needle_tokens += n.tokens;
      inst.needles.push_back(n);
    }
    const std::int64_t haystack = limit - fixed - needle_tokens;  // tokens the depths refer to
    if (haystack < 16)
      throw ConfigError("--context", "",
                        std::to_string(o_.context) + " tokens leave no room for a haystack: the instruction, needles, question and --max-new take " +
                            std::to_string(fixed + needle_tokens + o_.max_new));

    UnitStream text = stream(trial, draws, prose_, true, "\n\n");
    std::vector<Piece> pieces;
    for (std::int64_t total = 0; total < haystack; total += static_cast<std::int64_t>(pieces.back().ids.size())) pieces.push_back(text.next());

    // A needle goes before the nearest piece that starts a sentence, which keeps the text natural;
    // where none is within 1% of the haystack (long sentences at a short context), before the
    // nearest line, else before a word: the piece around the depth is split there first.
    const double tolerance = 0.01 * static_cast<double>(haystack);
    std::vector<double> targets;
    for (const NeedleSpec& spec : needles) {
      targets.push_back(spec.depth * static_cast<double>(haystack));
      if (distance(pieces, nearest(pieces, targets.back(), haystack, Boundary::Line), targets.back()) > tolerance)
        split_at_word(pieces, targets.back());
    }
    std::vector<std::size_t> before_piece;  // the piece each needle goes before
    for (double target : targets) {
      std::size_t best = nearest(pieces, target, haystack, Boundary::Sentence);
      if (distance(pieces, best, target) > tolerance) best = nearest(pieces, target, haystack, Boundary::Line);
      if (distance(pieces, best, target) > tolerance) best = nearest(pieces, target, haystack, Boundary::Word);
      // never before an earlier needle: vartrack's chain must read in order
      before_piece.push_back(before_piece.empty() ? best : std::max(best, before_piece.back()));
    }

    inst.prompt = head;
    inst.haystack_begin = static_cast<std::int64_t>(inst.prompt.size());
    std::int64_t used = 0;
    std::size_t next_needle = 0;
    for (std::size_t j = 0; j < pieces.size(); ++j) {
      for (; next_needle < needles.size() && before_piece[next_needle] == j; ++next_needle) {
        Needle& n = inst.needles[next_needle];
        n.position = static_cast<std::int64_t>(inst.prompt.size());
        n.actual_depth = static_cast<double>(used);
        inst.prompt = concat(std::move(inst.prompt), needle_ids[next_needle]);
      }
      if (used == haystack) break;
      const std::vector<int> ids = used + static_cast<std::int64_t>(pieces[j].ids.size()) <= haystack
                                       ? pieces[j].ids
                                       : whole_words(pieces[j].text, haystack - used).second;
      inst.prompt = concat(std::move(inst.prompt), ids);
      used += static_cast<std::int64_t>(ids.size());
      if (ids.size() < pieces[j].ids.size()) break;
    }
    // Every piece a needle may go before starts by token `haystack`, after whole pieces only.
    if (next_needle != needles.size()) throw std::logic_error("long_context_tasks: a needle fell past the haystack's end");
    for (Needle& n : inst.needles) n.actual_depth /= static_cast<double>(used);
    inst.haystack_end = static_cast<std::int64_t>(inst.prompt.size());
    inst.prompt = concat(std::move(inst.prompt), tail);
    inst.question = question;
    inst.documents = text.documents();
    return inst;
  }

  // The longest start of `text` that ends before whitespace (so with whole words) and encodes to
  // at most `tokens` ids: its length in bytes (0: none) and its ids.
  std::pair<std::size_t, std::vector<int>> whole_words(const std::string& text, std::int64_t tokens) const {
    for (std::size_t cut = text.size(); cut-- > 1;) {
      if (!is_ascii_space(text[cut]) || is_ascii_space(text[cut - 1])) continue;
      std::vector<int> ids = tokenizer_.encode(std::string_view(text).substr(0, cut));
      if (static_cast<std::int64_t>(ids.size()) <= tokens) return {cut, std::move(ids)};
    }
    return {0, {}};
  }

  // Splits the piece holding haystack token `target` before the word nearest it (at or below).
  void split_at_word(std::vector<Piece>& pieces, double target) const {
    const std::vector<std::int64_t> offsets = offsets_of(pieces);
    std::size_t j = 0;
    while (j + 1 < pieces.size() && static_cast<double>(offsets[j + 1]) <= target) ++j;
    auto [cut, ids] = whole_words(pieces[j].text, static_cast<std::int64_t>(target) - offsets[j]);
    if (cut == 0) return;
    Piece rest{pieces[j].text.substr(cut), {}, Boundary::Word};
    rest.ids = tokenizer_.encode(rest.text);
    pieces[j].text.resize(cut);
    pieces[j].ids = std::move(ids);
    pieces.insert(pieces.begin() + static_cast<std::ptrdiff_t>(j) + 1, std::move(rest));
  }

  const TaskOptions& o_;
  const HeldoutCorpus& corpus_;
  const Tokenizer& tokenizer_;
  std::vector<std::size_t> prose_, all_;  // document indices in this seed's order
  std::vector<int> bos_;
};

void check_options(const TaskOptions& o) {
  require_positive(o.context, "--context", "");
  require_positive(o.trials, "--trials", "");
  require_positive(o.max_new, "--max-new", "");
  require_positive(o.keys, "--keys", "");
  require_positive(o.hops, "--hops", "");
  require_positive(o.generate, "--generate", "");
  if (o.keys > static_cast<int>(kNames.size()))
    throw ConfigError("--keys", "", "at most " + std::to_string(kNames.size()) + " (distinct names), got " + std::to_string(o.keys));
  if (o.prefix < 0 || o.prefix >= o.context)
    throw ConfigError("--prefix", "", std::to_string(o.prefix) + " must be in [1, --context) (0: half the context)");
  if (o.kind == TaskKind::Perplexity && o.context < 2) throw ConfigError("--context", "", "perplexity needs at least 2 tokens");
  if (o.kind == TaskKind::Fidelity && o.generate >= o.context)
    throw ConfigError("--generate", "", std::to_string(o.generate) + " leaves no prompt in a context of " + std::to_string(o.context));
}

}  // namespace

const char* to_string(TaskKind kind) { return kTaskNames[static_cast<std::size_t>(kind)].data(); }

TaskKind parse_task_kind(std::string_view name, const std::string& origin) {
  for (std::size_t i = 0; i < kTaskNames.size(); ++i)
    if (kTaskNames[i] == name) return static_cast<TaskKind>(i);
  std::string known;
  for (std::string_view n : kTaskNames) known += (known.empty() ? "" : ", ") + std::string(n);
  throw ConfigError(origin, "", "unknown task '" + std::string(name) + "' (tasks: " + known + ")");
}

bool is_answer_task(TaskKind kind) { return kind == TaskKind::Passkey || kind == TaskKind::MultiKey || kind == TaskKind::VarTrack; }

std::vector<TaskInstance> build_tasks(const TaskOptions& options, const HeldoutCorpus& corpus, const Tokenizer& tokenizer) {
  check_options(options);
  const TaskBuilder builder(options, corpus, tokenizer);
  std::vector<TaskInstance> instances;
  for (int t = 0; t < options.trials; ++t) instances.push_back(builder.build(t));
  return instances;
}

std::string first_number(std::string_view text) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto begin = std::find_if(text.begin(), text.end(), digit);
  return std::string(begin, std::find_if_not(begin, text.end(), digit));
}

bool answer_correct(std::string_view output, std::string_view expected) { return !expected.empty() && first_number(output) == expected; }

const char* answer_rule() { return "correct iff the first run of ASCII digits in the decoded greedy output equals the answer"; }

}  // namespace specontext
