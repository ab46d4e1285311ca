#include "sim/json_fields.hpp"

#include <cmath>
#include <fstream>

namespace specontext {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string(), "", "cannot open file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(path.string(), "", std::string("not valid JSON: ") + e.what());
  }
}

JsonFields::JsonFields(const nlohmann::json& object, std::string origin)
    : object_(object), origin_(std::move(origin)) {
  if (!object_.is_object()) throw ConfigError(origin_, "", "expected a JSON object");
}

void JsonFields::fail(const std::string& key, const std::string& what) const {
  throw ConfigError(origin_, key, what);
}

bool JsonFields::has(const std::string& key) const {
  return object_.contains(key) && !object_.at(key).is_null();
}

const nlohmann::json& JsonFields::raw(const std::string& key) const {
  if (!has(key)) fail(key, "missing");
  return object_.at(key);
}

SourcedNumber JsonFields::sourced(const std::string& key) const {
  const auto& v = raw(key);
  SourcedNumber out;
  if (v.is_number()) {
    out.value = v.get<double>();
  } else if (v.is_object() && v.contains("value") && v.at("value").is_number()) {
    out.value = v.at("value").get<double>();
    if (v.contains("source")) {
      if (!v.at("source").is_string()) fail(key, "'source' must be a string");
      out.source = v.at("source").get<std::string>();
    }
  } else {
    fail(key, "expected a number or {\"value\": number, \"source\": text}");
  }
  if (!std::isfinite(out.value)) fail(key, "not a finite number");
  return out;
}

double JsonFields::number(const std::string& key) const { return sourced(key).value; }

double JsonFields::positive(const std::string& key) const {
  double v = number(key);
  if (!(v > 0)) fail(key, "must be positive, got " + std::to_string(v));
  return v;
}

std::optional<double> JsonFields::optional_number(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return number(key);
}

long long JsonFields::integer(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_number_integer()) fail(key, "expected an integer");
  return v.get<long long>();
}

std::optional<long long> JsonFields::optional_integer(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return integer(key);
}

std::string JsonFields::string(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_string()) fail(key, "expected a string");
  return v.get<std::string>();
}

std::optional<std::string> JsonFields::optional_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}

bool JsonFields::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = raw(key);
  if (!v.is_boolean()) fail(key, "expected true or false");
  return v.get<bool>();
}

}  // namespace specontext
