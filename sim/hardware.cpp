#include "sim/hardware.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "sim/json_fields.hpp"

namespace specontext {
namespace {

struct NumericField {
  const char* key;
  double Hardware::*member;
  bool must_be_fraction;
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
};

void set_numeric(Hardware& hw, const JsonFields& f, const NumericField& field) {
  SourcedNumber n = f.sourced(field.key);
  if (!(n.value > 0)) f.fail(field.key, "must be positive");
  if (field.must_be_fraction && n.value > 1) f.fail(field.key, "is a fraction and must be in (0, 1]");
  hw.*field.member = n.value;
  hw.sources[field.key] = n.source;
}

void set_gather_curve(Hardware& hw, const JsonFields& f) {
  const char* key = "gather_row_efficiency";
  const auto& v = f.raw(key);
  if (v.is_object() && !v.contains("value")) f.fail(key, "expected {\"value\": [[row_bytes, efficiency], ...], \"source\": text}");
  const nlohmann::json& points = v.is_object() ? v.at("value") : v;
  if (v.is_object() && v.contains("source")) {
    if (!v.at("source").is_string()) f.fail(key, "'source' must be a string");
    hw.sources[key] = v.at("source").get<std::string>();
  }
  if (!points.is_array() || points.empty()) f.fail(key, "expected a non-empty list of [row_bytes, efficiency]");
  hw.gather_row_efficiency.clear();
  for (const auto& p : points) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number())
      f.fail(key, "each point must be [row_bytes, efficiency]");
    double row = p[0].get<double>(), eff = p[1].get<double>();
    if (!(row > 0) || !(eff > 0) || eff > 1) f.fail(key, "row_bytes must be > 0 and efficiency in (0, 1]");
    if (!hw.gather_row_efficiency.empty() && row <= hw.gather_row_efficiency.back().first)
      f.fail(key, "row sizes must increase");
    hw.gather_row_efficiency.emplace_back(row, eff);
  }
}

}  // namespace

double Hardware::gather_efficiency(double row_bytes) const {
  if (row_bytes <= 0 || gather_row_efficiency.empty()) return 1.0;
  const auto& c = gather_row_efficiency;
  if (row_bytes <= c.front().first) return c.front().second;
  if (row_bytes >= c.back().first) return c.back().second;
  for (std::size_t i = 1; i < c.size(); ++i) {
    if (row_bytes <= c[i].first) {
      double t = std::log(row_bytes / c[i - 1].first) / std::log(c[i].first / c[i - 1].first);
      return c[i - 1].second + t * (c[i].second - c[i - 1].second);
    }
  }
  return c.back().second;
}

Hardware parse_hardware(const nlohmann::json& j, const std::string& origin) {
  JsonFields f(j, origin);
  std::set<std::string> known = {"name", "description", "gather_row_efficiency"};
  for (const auto& field : kNumericFields) known.insert(field.key);
  for (const auto& [key, _] : j.items())
    if (!known.count(key)) f.fail(key, "unknown hardware field");

  Hardware hw;
  hw.origin = origin;
  hw.name = f.string("name");
  hw.description = f.optional_string("description").value_or("");
  for (const auto& field : kNumericFields) set_numeric(hw, f, field);
  set_gather_curve(hw, f);
  return hw;
}

Hardware load_hardware(const std::filesystem::path& path) {
  return parse_hardware(read_json_file(path), path.string());
}

Hardware with_overrides(Hardware hw, const nlohmann::json& overrides, const std::string& origin) {
  if (overrides.is_null()) return hw;
  nlohmann::json merged = nlohmann::json::object();
  merged["name"] = hw.name;
  merged["description"] = hw.description;
  for (const auto& field : kNumericFields) merged[field.key] = {{"value", hw.*field.member}, {"source", hw.sources[field.key]}};
  nlohmann::json curve = nlohmann::json::array();
  for (const auto& [row, eff] : hw.gather_row_efficiency) curve.push_back({row, eff});
  merged["gather_row_efficiency"] = {{"value", curve}, {"source", hw.sources["gather_row_efficiency"]}};
  if (!overrides.is_object()) throw ConfigError(origin, "hardware_overrides", "expected an object");
  for (const auto& [key, value] : overrides.items()) {
    if (!merged.contains(key)) throw ConfigError(origin, key, "unknown hardware field in overrides");
    merged[key] = value;
  }
  return parse_hardware(merged, origin);
}

}  // namespace specontext
