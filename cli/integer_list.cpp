#include "cli/integer_list.hpp"

#include <sstream>
#include <stdexcept>

#include "sim/config_error.hpp"

namespace specontext::cli {

std::vector<long long> parse_integer_list(const std::string& text, const std::string& flag, long long min_value, long long max_value) {
  std::vector<long long> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < min_value || v > max_value) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw ConfigError(flag, "", "expected comma-separated integers in [" + std::to_string(min_value) + ", " + std::to_string(max_value) +
                                      "], got '" + item + "'");
    }
  }
  if (out.empty()) throw ConfigError(flag, "", "no values given");
  return out;
}

std::vector<int> parse_token_ids(const std::string& text, const std::string& flag) {
  const auto values = parse_integer_list(text, flag, 0, 0x7fffffff);
  return std::vector<int>(values.begin(), values.end());
}

}  // namespace specontext::cli
