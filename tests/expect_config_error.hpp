#pragma once
// Asserts that a call fails with a ConfigError naming the file (origin) and the field.
#include <gtest/gtest.h>

#include <functional>
#include <string>

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

}  // namespace specontext::testing
