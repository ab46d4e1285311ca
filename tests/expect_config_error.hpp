#pragma once
// Asserts that a call fails with a ConfigError naming the file (origin) and the field, or naming
// whatever else the message must hold.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "sim/config_error.hpp"

namespace specontext::testing {

inline void expect_config_error(const std::function<void()>& f, const std::string& origin, const std::string& field) {
  try {
    f();
    ADD_FAILURE() << "expected a ConfigError naming field '" << field << "', nothing was thrown";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(origin), std::string::npos) << "origin '" << origin << "' missing from: " << what;
    EXPECT_NE(what.find("field '" + field + "'"), std::string::npos) << "field '" << field << "' missing from: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ConfigError naming field '" << field << "', got another exception: " << e.what();
  }
}

// Asserts a ConfigError whose message holds every one of `parts` (a file, a tensor, a dtype, ...).
inline void expect_config_error_naming(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a ConfigError, nothing was thrown";
  } catch (const ConfigError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' missing from: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ConfigError, got: " << e.what();
  }
}

}  // namespace specontext::testing
