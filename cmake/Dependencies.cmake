# Header-only dependencies. Debian ships CMake package files for them; some machines (the
# H200 host among them) have the headers without the package files, so fall back to the
# headers alone.
function(specontext_header_only target header)
  if(TARGET ${target})
    return()
  endif()
  find_path(${target}_INCLUDE_DIR ${header} PATH_SUFFIXES ${ARGN})
  if(NOT ${target}_INCLUDE_DIR)
    message(FATAL_ERROR "specontext: ${target} not found (no CMake package and no ${header}); on Debian: scripts/setup.sh installs it")
  endif()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  target_include_directories(${target} INTERFACE ${${target}_INCLUDE_DIR})
  message(STATUS "specontext: ${target} from headers in ${${target}_INCLUDE_DIR}")
endfunction()

find_package(Eigen3 3.3 QUIET NO_MODULE)
specontext_header_only(Eigen3::Eigen Eigen/Core eigen3)
find_package(nlohmann_json 3.10 QUIET)
specontext_header_only(nlohmann_json::nlohmann_json nlohmann/json.hpp)
find_package(CLI11 QUIET)
specontext_header_only(CLI11::CLI11 CLI/CLI.hpp)
find_package(Boost 1.74 REQUIRED)  # Boost.Graph is header-only for what we use
