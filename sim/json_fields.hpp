#pragma once
// Typed access to JSON fields with errors that name the file and the field.
// Numeric fields of our own configs may be written either as a bare number or as
// {"value": number, "source": "where it came from"}; the source is kept.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "sim/config_error.hpp"

namespace specontext {

nlohmann::json read_json_file(const std::filesystem::path& path);

struct SourcedNumber {
  double value = 0.0;
  std::string source;
};

class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string origin);

  const std::string& origin() const { return origin_; }
  bool has(const std::string& key) const;
  const nlohmann::json& raw(const std::string& key) const;

  SourcedNumber sourced(const std::string& key) const;
  double number(const std::string& key) const;
  double positive(const std::string& key) const;
  std::optional<double> optional_number(const std::string& key) const;
  long long integer(const std::string& key) const;
  std::optional<long long> optional_integer(const std::string& key) const;
  std::string string(const std::string& key) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  bool boolean_or(const std::string& key, bool fallback) const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json& object_;
  std::string origin_;
};

}  // namespace specontext
