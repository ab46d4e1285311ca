#include "sim/hardware.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "sim/json_fields.hpp"

namespace specontext {
namespace {

struct NumericField {
  const char* key;
  double Hardware::*member;
  bool must_be_fraction;
  bool optional = false;  // absent: the member keeps its default (hardware.hpp)
};

const NumericField kNumericFields[] = {
    {"gpu_memory_bytes", &Hardware::gpu_memory_bytes, false},
    {"hbm_bandwidth_Bps", &Hardware::hbm_bandwidth_Bps, false},
    {"dense_bf16_flops", &Hardware::dense_bf16_flops, false},
    {"sm_count", &Hardware::sm_count, false},
    {"h2d_bandwidth_Bps", &Hardware::h2d_bandwidth_Bps, false},
    {"d2h_bandwidth_Bps", &Hardware::d2h_bandwidth_Bps, false},
    {"host_memory_bytes", &Hardware::host_memory_bytes, false},
    {"host_memory_bandwidth_Bps", &Hardware::host_memory_bandwidth_Bps, false},
    {"kernel_launch_overhead_s", &Hardware::kernel_launch_overhead_s, false},
    {"kernel_gap_s", &Hardware::kernel_gap_s, false},
    {"hbm_efficiency", &Hardware::hbm_efficiency, true},
    {"compute_efficiency", &Hardware::compute_efficiency, true},
    {"gather_gpu_slowdown", &Hardware::gather_gpu_slowdown, true},
    {"hbm_gather_efficiency", &Hardware::hbm_gather_efficiency, true},
    {"gather_row_floor_scale", &Hardware::gather_row_floor_scale, false, true},
};

void set_numeric(Hardware& hw, const JsonFields& f, const NumericField& field) {
  if (field.optional && !f.has(field.key)) return;
  SourcedNumber n = f.sourced(field.key);
  if (!(n.value > 0)) f.fail(field.key, "must be positive");
  if (field.must_be_fraction && n.value > 1) f.fail(field.key, "is a fraction and must be in (0, 1]");
  hw.*field.member = n.value;
  hw.sources[field.key] = n.source;
}

// A measured curve: [[x, y], ...] with x increasing, bare or as {"value": ..., "source": text}.
struct CurveField {
  const char* key;
  std::vector<std::pair<double, double>> Hardware::*member;
  const char* x_name;
  const char* y_name;
  bool y_is_fraction;
  bool required;
};

const CurveField kCurveFields[] = {
    {"gather_row_efficiency", &Hardware::gather_row_efficiency, "row_bytes", "efficiency", true, true},
    {"gather_row_seconds_by_footprint", &Hardware::gather_row_seconds_by_footprint, "footprint_bytes", "seconds_per_row", false, false},
};

void set_curve(Hardware& hw, const JsonFields& f, const CurveField& c) {
  const std::string pair = std::string("[") + c.x_name + ", " + c.y_name + "]";
  if (!c.required && !f.has(c.key)) return;
  const auto& v = f.raw(c.key);
  if (v.is_object() && !v.contains("value")) f.fail(c.key, "expected {\"value\": [" + pair + ", ...], \"source\": text}");
  const nlohmann::json& points = v.is_object() ? v.at("value") : v;
  if (v.is_object() && v.contains("source")) {
    if (!v.at("source").is_string()) f.fail(c.key, "'source' must be a string");
    hw.sources[c.key] = v.at("source").get<std::string>();
  }
  if (!points.is_array() || points.empty()) f.fail(c.key, "expected a non-empty list of " + pair);
  auto& curve = hw.*c.member;
  curve.clear();
  for (const auto& p : points) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number()) f.fail(c.key, "each point must be " + pair);
    double x = p[0].get<double>(), y = p[1].get<double>();
    if (!(x > 0) || !(y > 0) || (c.y_is_fraction && y > 1))
      f.fail(c.key, std::string(c.x_name) + " must be > 0 and " + c.y_name + (c.y_is_fraction ? " in (0, 1]" : " > 0"));
    if (!curve.empty() && x <= curve.back().first) f.fail(c.key, std::string(c.x_name) + " must increase");
    curve.emplace_back(x, y);
  }
}

// Log-linear in x between the points, flat outside them.
double log_linear(const std::vector<std::pair<double, double>>& c, double x) {
  if (x <= c.front().first) return c.front().second;
  if (x >= c.back().first) return c.back().second;
  for (std::size_t i = 1; i < c.size(); ++i) {
    if (x <= c[i].first) {
      double t = std::log(x / c[i - 1].first) / std::log(c[i].first / c[i - 1].first);
      return c[i - 1].second + t * (c[i].second - c[i - 1].second);
    }
  }
  return c.back().second;
}

}  // namespace

double Hardware::gather_efficiency(double row_bytes) const {
  if (row_bytes <= 0 || gather_row_efficiency.empty()) return 1.0;
  return log_linear(gather_row_efficiency, row_bytes);
}

double Hardware::gather_row_floor_s(double footprint_bytes) const {
  if (footprint_bytes <= 0 || gather_row_seconds_by_footprint.empty()) return 0.0;
  return gather_row_floor_scale * log_linear(gather_row_seconds_by_footprint, footprint_bytes);
}

Hardware parse_hardware(const nlohmann::json& j, const std::string& origin) {
  JsonFields f(j, origin);
  std::set<std::string> known = {"name", "description"};
  for (const auto& field : kNumericFields) known.insert(field.key);
  for (const auto& curve : kCurveFields) known.insert(curve.key);
  for (const auto& [key, _] : j.items())
    if (!known.count(key)) f.fail(key, "unknown hardware field");

  Hardware hw;
  hw.origin = origin;
  hw.name = f.string("name");
  hw.description = f.optional_string("description").value_or("");
  for (const auto& field : kNumericFields) set_numeric(hw, f, field);
  for (const auto& curve : kCurveFields) set_curve(hw, f, curve);
  return hw;
}

Hardware load_hardware(const std::filesystem::path& path) {
  return parse_hardware(read_json_file(path), path.string());
}

namespace {

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The words of an upper-cased name, split at anything but letters and digits.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out.back() += c;
    else if (!out.back().empty())
      out.emplace_back();
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

// The model token of a GPU name: the first word that mixes letters and digits or is all digits
// (H200, GH200, A100, 4090), never a memory size such as 80GB.
std::string model_token(const std::string& name) {
  for (const std::string& w : words(upper(name))) {
    const bool digit = std::any_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    const bool size = w.size() > 2 && (w.substr(w.size() - 2) == "GB" || w.substr(w.size() - 2) == "MB");
    if (digit && !size) return w;
  }
  return "";
}

}  // namespace

std::optional<std::filesystem::path> hardware_for_device(const std::string& device_name, const std::filesystem::path& dir) {
  const std::string token = model_token(device_name);
  if (token.empty() || !std::filesystem::is_directory(dir)) return std::nullopt;
  const bool pcie = upper(device_name).find("PCIE") != std::string::npos;
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::filesystem::path& p = entry.path();
    if (p.extension() != ".json" || p.stem().string().find("calibrated") != std::string::npos) continue;
    const nlohmann::json j = read_json_file(p);
    if (!j.is_object() || !j.contains("name") || !j.at("name").is_string()) continue;
    const std::string name = j.at("name").get<std::string>();
    if (model_token(name) != token || (upper(name).find("PCIE") != std::string::npos) != pcie) continue;
    found.push_back(p);
  }
  if (found.size() != 1) return std::nullopt;
  return found.front();
}

Hardware with_overrides(Hardware hw, const nlohmann::json& overrides, const std::string& origin) {
  if (overrides.is_null()) return hw;
  nlohmann::json merged = nlohmann::json::object();
  merged["name"] = hw.name;
  merged["description"] = hw.description;
  for (const auto& field : kNumericFields) merged[field.key] = {{"value", hw.*field.member}, {"source", hw.sources[field.key]}};
  for (const auto& c : kCurveFields) {
    const auto& points = hw.*c.member;
    if (points.empty()) continue;  // an optional curve left out stays out
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& [x, y] : points) curve.push_back({x, y});
    merged[c.key] = {{"value", curve}, {"source", hw.sources[c.key]}};
  }
  if (!overrides.is_object()) throw ConfigError(origin, "hardware_overrides", "expected an object");
  for (const auto& [key, value] : overrides.items()) {
    const bool optional_curve = std::any_of(std::begin(kCurveFields), std::end(kCurveFields), [&](const CurveField& c) { return key == c.key; });
    if (!merged.contains(key) && !optional_curve) throw ConfigError(origin, key, "unknown hardware field in overrides");
    merged[key] = value;
  }
  return parse_hardware(merged, origin);
}

}  // namespace specontext
