#pragma once
// Errors in user-supplied inputs (config files, experiment files, command-line values).
// The message always names the file (or flag) and the field, so the user can fix it.
#include <stdexcept>
#include <string>

namespace specontext {

class ConfigError : public std::runtime_error {
 public:
  ConfigError(const std::string& origin, const std::string& field, const std::string& what)
      : std::runtime_error(origin + (field.empty() ? "" : ": field '" + field + "'") + ": " + what) {}
};

// The most common check on a count or size from the user.
inline void require_positive(long long value, const std::string& origin, const std::string& field) {
  if (value <= 0) throw ConfigError(origin, field, "must be positive, got " + std::to_string(value));
}

}  // namespace specontext
