// The measurements file of sim/calibration.hpp: reading (every error names the file, the line and
// the column) and writing.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "sim/calibration.hpp"
#include "sim/config_error.hpp"

namespace specontext {
namespace {

// RFC 4180 fields of one line: quoted fields may hold commas and doubled quotes; no line breaks.
std::vector<std::string> split_fields(const std::string& line, const std::string& where) {
  std::vector<std::string> out;
  std::string field;
  std::size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) throw ConfigError(where, "", "a quoted field is not closed (fields may not span lines)");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      if (i < line.size() && line[i] != ',') throw ConfigError(where, "", "text after a quoted field's closing quote");
    } else {
      while (i < line.size() && line[i] != ',') {
        if (line[i] == '"') throw ConfigError(where, "", "a quote inside an unquoted field");
        field += line[i++];
      }
    }
    out.push_back(field);
    if (i >= line.size()) return out;
    ++i;  // the comma
  }
}

// One data line's fields by column name, with typed access whose errors name line and column.
class Row {
 public:
  Row(std::map<std::string, std::string> fields, std::map<std::string, int> column_numbers, std::string where)
      : fields_(std::move(fields)), numbers_(std::move(column_numbers)), where_(std::move(where)) {}

  const std::string& text(const std::string& col) const { return fields_.at(col); }

  [[noreturn]] void fail(const std::string& col, const std::string& what) const {
    throw ConfigError(where_, col, what + " (column " + std::to_string(numbers_.at(col)) + ")");
  }

  std::string required(const std::string& col) const {
    if (text(col).empty()) fail(col, "must not be empty");
    return text(col);
  }

  void require_empty(const std::string& col, const std::string& why) const {
    if (!text(col).empty()) fail(col, "must be empty " + why + ", got '" + text(col) + "'");
  }

  long long integer(const std::string& col, long long min) const {
    const std::string& t = text(col);
    long long v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size()) fail(col, "expected an integer, got '" + t + "'");
    if (v < min) fail(col, "must be at least " + std::to_string(min) + ", got " + t);
    return v;
  }

  double number(const std::string& col) const {
    const std::string& t = text(col);
    char* end = nullptr;
    const double v = t.empty() ? 0.0 : std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v)) fail(col, "expected a number, got '" + t + "'");
    return v;
  }

  double positive(const std::string& col) const {
    const double v = number(col);
    if (!(v > 0)) fail(col, "must be positive, got " + text(col));
    return v;
  }

 private:
  std::map<std::string, std::string> fields_;
  std::map<std::string, int> numbers_;
  std::string where_;
};

Measurement parse_row(const Row& r, int line) {
  Measurement m;
  m.line = line;
  m.gpu = r.required("gpu");
  m.driver = r.text("driver");
  m.cuda = r.text("cuda");
  m.date = r.required("date");
  m.system = r.required("system");
  m.model = r.required("model");
  m.requests = r.integer("requests", 1);
  m.depth = r.integer("depth", 1);
  m.offloaded_layers = r.integer("offloaded_layers", 0);
  m.steps = r.integer("steps", 1);
  m.reps = r.integer("reps", 1);
  m.median_ms = r.positive("median_ms");
  m.min_ms = r.positive("min_ms");
  m.max_ms = r.positive("max_ms");
  if (m.min_ms > m.median_ms) r.fail("min_ms", "exceeds median_ms");
  if (m.max_ms < m.median_ms) r.fail("max_ms", "is below median_ms");
  if (m.system == "full") {
    const std::string why = "for system full (dense attention)";
    r.require_empty("components", why);
    r.require_empty("draft", why);
    r.require_empty("budget", why);
    r.require_empty("overlap", why);
    r.require_empty("prefetch", why);
    if (m.offloaded_layers != 0) r.fail("offloaded_layers", "must be 0 for system full (every layer's KV on the GPU)");
  } else if (m.system == "specontext") {
    m.components = r.required("components");
    try {
      m.components = parse_components(m.components).str();
    } catch (const ConfigError&) {
      r.fail("components", "expected c1, \"c1,c2\" or \"c1,c2,c3\", got '" + m.components + "'");
    }
    m.draft = r.required("draft");
    m.budget = r.integer("budget", 1);
    m.overlap = r.number("overlap");
    if (m.overlap < 0 || m.overlap > 1) r.fail("overlap", "must be within [0, 1], got " + r.text("overlap"));
    m.prefetch = r.required("prefetch");
    if (m.prefetch != "async" && m.prefetch != "sync") r.fail("prefetch", "expected async or sync, got '" + m.prefetch + "'");
    // The engine's ablation: c2 is the copy-stream prefetch, so sync loads are c1 without c2.
    const bool c2 = m.components.find("c2") != std::string::npos;
    if (c2 != (m.prefetch == "async"))
      r.fail("prefetch", "'" + m.prefetch + "' contradicts components '" + m.components + "' (c2 is the asynchronous prefetch)");
  } else {
    r.fail("system", "expected full or specontext, got '" + m.system + "'");
  }
  return m;
}

std::string quoted(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string number_text(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

}  // namespace

const std::vector<std::string>& measurement_columns() {
  static const std::vector<std::string> columns = {"gpu", "driver", "cuda", "date", "system", "components", "model", "draft", "requests", "depth",
                                                   "budget", "overlap", "offloaded_layers", "prefetch", "steps", "reps", "median_ms", "min_ms", "max_ms"};
  return columns;
}

std::uint64_t fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string fingerprint_text(std::uint64_t fingerprint) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv1a:%016llx", static_cast<unsigned long long>(fingerprint));
  return buf;
}

Measurements parse_measurements(const std::string& text, const std::string& origin) {
  Measurements out;
  out.origin = origin;
  out.fingerprint = fnv1a64(text);
  std::istringstream in(text);
  std::string line;
  int number = 0;
  std::vector<std::string> header;
  std::map<std::string, int> column_numbers;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = origin + ":" + std::to_string(number);
    if (header.empty()) {
      if (line.empty()) throw ConfigError(where, "", "expected the header line naming the columns");
      header = split_fields(line, where);
      const auto& known = measurement_columns();
      const std::set<std::string> names(known.begin(), known.end());
      for (std::size_t i = 0; i < header.size(); ++i) {
        if (!names.count(header[i])) throw ConfigError(where, header[i], "unknown column (column " + std::to_string(i + 1) + ")");
        if (!column_numbers.emplace(header[i], static_cast<int>(i + 1)).second)
          throw ConfigError(where, header[i], "named twice (column " + std::to_string(i + 1) + ")");
      }
      for (const auto& c : known)
        if (!column_numbers.count(c)) throw ConfigError(where, c, "missing column: the header must name every column of sim/calibration.hpp");
      continue;
    }
    if (line.empty()) continue;
    const std::vector<std::string> fields = split_fields(line, where);
    if (fields.size() != header.size())
      throw ConfigError(where, "", "has " + std::to_string(fields.size()) + " fields, the header names " + std::to_string(header.size()) +
                                       " (quote a field that holds a comma, e.g. \"c1,c2\")");
    std::map<std::string, std::string> by_name;
    for (std::size_t i = 0; i < header.size(); ++i) by_name[header[i]] = fields[i];
    const Row row(std::move(by_name), column_numbers, where);
    Measurement m = parse_row(row, number);
    if (!out.points.empty() && m.gpu != out.points.front().gpu)
      row.fail("gpu", "'" + m.gpu + "' differs from line " + std::to_string(out.points.front().line) + "'s '" + out.points.front().gpu +
                          "': one machine per file");
    out.points.push_back(std::move(m));
  }
  if (header.empty()) throw ConfigError(origin, "", "empty: expected a header line naming the columns and measured points");
  if (out.points.empty()) throw ConfigError(origin, "", "holds no measured points");
  return out;
}

Measurements load_measurements(const std::filesystem::path& file, const std::string& origin) {
  const std::string name = origin.empty() ? file.string() : origin;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(name, "", "cannot open the measurements file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_measurements(text.str(), name);
}

std::string measurements_csv(const std::vector<Measurement>& points) {
  std::string out;
  const auto& cols = measurement_columns();
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (i) out += ',';
    out += cols[i];
  }
  out += '\n';
  for (const auto& m : points) {
    const bool sparse = m.system == "specontext";
    const std::vector<std::string> fields = {m.gpu, m.driver, m.cuda, m.date, m.system, m.components, m.model, m.draft,
                                             std::to_string(m.requests), std::to_string(m.depth), sparse ? std::to_string(m.budget) : "",
                                             sparse ? number_text(m.overlap) : "", std::to_string(m.offloaded_layers), m.prefetch,
                                             std::to_string(m.steps), std::to_string(m.reps), number_text(m.median_ms), number_text(m.min_ms),
                                             number_text(m.max_ms)};
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i) out += ',';
      out += quoted(fields[i]);
    }
    out += '\n';
  }
  return out;
}

}  // namespace specontext
