// Tests of sim/hardware: the gather-efficiency curve, config errors naming the field, overrides.
#include <gtest/gtest.h>

#include "tests/expect_config_error.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "sim/config_error.hpp"
#include "sim/hardware.hpp"
#include "sim/scenario_loader.hpp"
#include "tests/temp_dir.hpp"

using namespace specontext;
using nlohmann::json;

namespace {

const char* kOrigin = "inline-hardware.json";

using specontext::testing::expect_config_error;

// A complete hardware description; numbers bare or {"value", "source"}, both accepted.
json card() {
  return json{
      {"name", "Test card"},
      {"description", "for tests"},
      {"gpu_memory_bytes", {{"value", 85899345920.0}, {"source", "test: 80 GiB"}}},
      {"hbm_bandwidth_Bps", {{"value", 2.0e12}, {"source", "test"}}},
      {"dense_bf16_flops", 3.12e14},
      {"sm_count", 108},
      {"h2d_bandwidth_Bps", {{"value", 2.77e10}, {"source", "test h2d"}}},
      {"d2h_bandwidth_Bps", 2.765e10},
      {"host_memory_bytes", 1.0e12},
      {"host_memory_bandwidth_Bps", 2.048e11},
      {"kernel_launch_overhead_s", 4e-6},
      {"kernel_gap_s", 1.5e-6},
      {"hbm_efficiency", 0.86},
      {"compute_efficiency", 0.79},
      {"hbm_gather_efficiency", 0.6},
      {"gather_row_efficiency", {{"value", {{256, 0.356}, {1024, 0.904}, {2048, 0.917}, {4096, 0.922}}}, {"source", "test curve"}}},
      {"gather_gpu_slowdown", {{"value", 0.07}, {"source", "test slowdown"}}},
  };
}

const char* kNumericFields[] = {"gpu_memory_bytes",  "hbm_bandwidth_Bps",         "dense_bf16_flops",
                                "sm_count",          "h2d_bandwidth_Bps",         "d2h_bandwidth_Bps",
                                "host_memory_bytes", "host_memory_bandwidth_Bps", "kernel_launch_overhead_s",
                                "kernel_gap_s",      "hbm_efficiency",            "compute_efficiency",
                                "gather_gpu_slowdown", "hbm_gather_efficiency"};

}  // namespace

TEST(Hardware, ParsesBareAndSourcedNumbers) {
  const Hardware hw = parse_hardware(card(), kOrigin);
  EXPECT_EQ(hw.name, "Test card");
  EXPECT_EQ(hw.description, "for tests");
  EXPECT_EQ(hw.origin, kOrigin);
  EXPECT_EQ(hw.gpu_memory_bytes, 85899345920.0);
  EXPECT_EQ(hw.hbm_bandwidth_Bps, 2.0e12);
  EXPECT_EQ(hw.dense_bf16_flops, 3.12e14);
  EXPECT_EQ(hw.sm_count, 108.0);
  EXPECT_EQ(hw.h2d_bandwidth_Bps, 2.77e10);
  EXPECT_EQ(hw.d2h_bandwidth_Bps, 2.765e10);
  EXPECT_EQ(hw.kernel_launch_overhead_s, 4e-6);
  EXPECT_EQ(hw.kernel_gap_s, 1.5e-6);
  EXPECT_EQ(hw.hbm_efficiency, 0.86);
  EXPECT_EQ(hw.compute_efficiency, 0.79);
  EXPECT_EQ(hw.gather_gpu_slowdown, 0.07);
  EXPECT_EQ(hw.hbm_gather_efficiency, 0.6);
  EXPECT_EQ(hw.sources.at("gather_gpu_slowdown"), "test slowdown");
  ASSERT_EQ(hw.gather_row_efficiency.size(), 4u);
  EXPECT_EQ(hw.sources.at("gpu_memory_bytes"), "test: 80 GiB");
  EXPECT_EQ(hw.sources.at("h2d_bandwidth_Bps"), "test h2d");
  EXPECT_EQ(hw.sources.at("gather_row_efficiency"), "test curve");
  EXPECT_EQ(hw.sources.at("dense_bf16_flops"), "");  // bare number: no source
}

TEST(Hardware, GatherEfficiencyAtMeasuredPoints) {
  const Hardware hw = parse_hardware(card(), kOrigin);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(256), 0.356);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(1024), 0.904);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(2048), 0.917);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(4096), 0.922);
}

TEST(Hardware, GatherEfficiencyLogLinearBetweenPoints) {
  const Hardware hw = parse_hardware(card(), kOrigin);
  // 512 B is halfway between 256 and 1024 on a log scale: 0.356 + 0.5 * (0.904 - 0.356) = 0.630.
  EXPECT_NEAR(hw.gather_efficiency(512), 0.630, 1e-12);
  // A quarter of the way (log scale) from 256 to 1024 is 256 * 4^0.25 = 362.04 B: 0.356 + 0.25 * 0.548 = 0.493.
  EXPECT_NEAR(hw.gather_efficiency(256.0 * std::sqrt(2.0)), 0.493, 1e-12);
  // Halfway between 2048 and 4096 (2896.3 B): (0.917 + 0.922) / 2 = 0.9195.
  EXPECT_NEAR(hw.gather_efficiency(2048.0 * std::sqrt(2.0)), 0.9195, 1e-12);
  // Not linear in bytes: linear interpolation would give 0.356 + (256/768) * 0.548 = 0.5387 at 512 B.
  EXPECT_GT(hw.gather_efficiency(512), 0.6);
}

TEST(Hardware, GatherEfficiencyFlatOutsideAndOneForContiguous) {
  const Hardware hw = parse_hardware(card(), kOrigin);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(1), 0.356);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(128), 0.356);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(8192), 0.922);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(1e9), 0.922);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(0), 1.0);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(-5), 1.0);
}

TEST(Hardware, GatherEfficiencySinglePointAndBareList) {
  json j = card();
  j["gather_row_efficiency"] = {{512, 0.5}};
  const Hardware hw = parse_hardware(j, kOrigin);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(64), 0.5);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(512), 0.5);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(4096), 0.5);
  EXPECT_DOUBLE_EQ(hw.gather_efficiency(0), 1.0);
}

TEST(Hardware, ErrorMissingField) {
  for (const char* key : kNumericFields) {
    SCOPED_TRACE(key);
    json j = card();
    j.erase(key);
    expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, key);
  }
  for (const char* key : {"name", "gather_row_efficiency"}) {
    SCOPED_TRACE(key);
    json j = card();
    j.erase(key);
    expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, key);
  }
  json j = card();
  j.erase("description");  // optional
  EXPECT_EQ(parse_hardware(j, kOrigin).description, "");
}

TEST(Hardware, ErrorUnknownField) {
  json j = card();
  j["nvlink_bandwidth_Bps"] = 9e11;
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "nvlink_bandwidth_Bps");
}

TEST(Hardware, ErrorEfficiencyAboveOne) {
  for (const char* key : {"hbm_efficiency", "compute_efficiency", "gather_gpu_slowdown", "hbm_gather_efficiency"}) {
    SCOPED_TRACE(key);
    json j = card();
    j[key] = {{"value", 1.2}, {"source", "typo"}};
    expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, key);
    j[key] = 1.0;  // 1 itself is allowed
    EXPECT_NO_THROW(parse_hardware(j, kOrigin));
  }
  json j = card();
  j["gather_row_efficiency"] = {{256, 0.3}, {1024, 1.5}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
}

TEST(Hardware, ErrorNonPositiveValue) {
  for (const char* key : kNumericFields) {
    SCOPED_TRACE(key);
    for (double bad : {0.0, -1.0}) {
      json j = card();
      j[key] = bad;
      expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, key);
    }
  }
  json j = card();
  j["gather_row_efficiency"] = {{0, 0.3}, {1024, 0.9}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
  j["gather_row_efficiency"] = {{256, 0.0}, {1024, 0.9}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
}

TEST(Hardware, ErrorNotANumber) {
  json j = card();
  j["hbm_bandwidth_Bps"] = "4.8 TB/s";
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "hbm_bandwidth_Bps");
  j = card();
  j["sm_count"] = {{"source", "no value"}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "sm_count");
  j = card();
  j["sm_count"] = {{"value", 132}, {"source", 7}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "sm_count");
  j = card();
  j["name"] = 200;
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "name");
}

TEST(Hardware, ErrorGatherRowsNotIncreasing) {
  json j = card();
  j["gather_row_efficiency"] = {{1024, 0.9}, {256, 0.3}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
  j["gather_row_efficiency"] = {{256, 0.3}, {256, 0.4}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
}

TEST(Hardware, ErrorGatherCurveMalformed) {
  json j = card();
  for (const char* bad : {"[]", "[[256, 0.3, 7]]", "[[\"256\", 0.3]]", "0.9", "[256, 0.3]", "{\"value\": 0.9}"}) {
    SCOPED_TRACE(bad);
    j["gather_row_efficiency"] = json::parse(bad);
    expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
  }
}

TEST(Hardware, ErrorGatherCurveObjectWithoutValue) {
  json j = card();
  j["gather_row_efficiency"] = {{"source", "forgot the value"}};
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_efficiency");
}

// The per-row floor of gathers from a large host buffer is optional: without it there is none.
TEST(Hardware, FootprintFloorIsOptional) {
  const Hardware hw = parse_hardware(card(), kOrigin);
  EXPECT_TRUE(hw.gather_row_seconds_by_footprint.empty());
  EXPECT_EQ(hw.gather_row_floor_s(1e12), 0.0);
  EXPECT_EQ(hw.sources.count("gather_row_seconds_by_footprint"), 0u);
}

TEST(Hardware, FootprintFloorLogLinearAndFlatOutside) {
  json j = card();
  const double gib = 1024.0 * 1024 * 1024;
  j["gather_row_seconds_by_footprint"] = {{"value", {{2 * gib, 10e-9}, {8 * gib, 20e-9}, {32 * gib, 30e-9}}}, {"source", "test floor"}};
  const Hardware hw = parse_hardware(j, kOrigin);
  EXPECT_EQ(hw.sources.at("gather_row_seconds_by_footprint"), "test floor");
  EXPECT_DOUBLE_EQ(hw.gather_row_floor_s(2 * gib), 10e-9);
  EXPECT_NEAR(hw.gather_row_floor_s(4 * gib), 15e-9, 1e-21);   // halfway from 2 to 8 GiB on a log scale
  EXPECT_NEAR(hw.gather_row_floor_s(16 * gib), 25e-9, 1e-21);  // halfway from 8 to 32 GiB
  EXPECT_DOUBLE_EQ(hw.gather_row_floor_s(0.5 * gib), 10e-9);
  EXPECT_DOUBLE_EQ(hw.gather_row_floor_s(100 * gib), 30e-9);
  EXPECT_EQ(hw.gather_row_floor_s(0), 0.0);  // no buffer named: no floor
}

TEST(Hardware, FootprintFloorScaleIsOptionalAndScalesTheCurve) {
  json j = card();
  j["gather_row_seconds_by_footprint"] = {{1e9, 2e-8}, {4e9, 4e-8}};
  EXPECT_DOUBLE_EQ(parse_hardware(j, kOrigin).gather_row_floor_scale, 1.0);
  j["gather_row_floor_scale"] = {{"value", 0.5}, {"source", "fitted"}};
  const Hardware hw = parse_hardware(j, kOrigin);
  EXPECT_DOUBLE_EQ(hw.gather_row_floor_s(4e9), 2e-8);
  EXPECT_EQ(hw.sources.at("gather_row_floor_scale"), "fitted");
  EXPECT_DOUBLE_EQ(with_overrides(hw, {{"kernel_gap_s", 2e-6}}, "experiment.json").gather_row_floor_s(4e9), 2e-8) << "overrides keep the factor";
  j["gather_row_floor_scale"] = 0;
  expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, "gather_row_floor_scale");
}

TEST(Hardware, ErrorFootprintFloorMalformed) {
  const char* key = "gather_row_seconds_by_footprint";
  for (const char* bad : {"[]", "[[1e9, 1e-8], [1e9, 2e-8]]", "[[2e9, 1e-8], [1e9, 2e-8]]", "[[1e9, 0]]", "[[0, 1e-8]]",
                          "[[1e9, -1e-8]]", "[1e9, 1e-8]", "{\"source\": \"no value\"}"}) {
    SCOPED_TRACE(bad);
    json j = card();
    j[key] = json::parse(bad);
    expect_config_error([&] { parse_hardware(j, kOrigin); }, kOrigin, key);
  }
  json j = card();
  j[key] = {{1e9, 5.0}};  // seconds, not a fraction: above 1 is allowed
  EXPECT_DOUBLE_EQ(parse_hardware(j, kOrigin).gather_row_floor_s(1e9), 5.0);
}

TEST(Hardware, OverridesMayAddTheOptionalFloor) {
  const Hardware base = parse_hardware(card(), kOrigin);
  const Hardware hw = with_overrides(base, {{"gather_row_seconds_by_footprint", {{1e9, 2e-8}}}}, "experiment.json");
  EXPECT_DOUBLE_EQ(hw.gather_row_floor_s(4e9), 2e-8);
  const Hardware kept = with_overrides(hw, {{"kernel_gap_s", 2e-6}}, "experiment.json");
  EXPECT_DOUBLE_EQ(kept.gather_row_floor_s(4e9), 2e-8) << "an override of another field keeps the curve";
}

TEST(Hardware, ErrorNotAnObject) {
  EXPECT_THROW(parse_hardware(json::array(), kOrigin), ConfigError);
}

TEST(Hardware, LoadMissingFileNamesIt) {
  const auto missing = std::filesystem::temp_directory_path() / "specontext-test-no-such-card.json";
  try {
    load_hardware(missing);
    ADD_FAILURE() << "no error for a missing file";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
}

TEST(Hardware, OverridesReplaceOneField) {
  const Hardware base = parse_hardware(card(), kOrigin);
  const Hardware hw = with_overrides(base, json{{"h2d_bandwidth_Bps", 5.54e10}}, "experiment.json");
  EXPECT_EQ(hw.h2d_bandwidth_Bps, 5.54e10);
  // Everything else is as it was.
  EXPECT_EQ(hw.name, base.name);
  EXPECT_EQ(hw.description, base.description);
  EXPECT_EQ(hw.gpu_memory_bytes, base.gpu_memory_bytes);
  EXPECT_EQ(hw.hbm_bandwidth_Bps, base.hbm_bandwidth_Bps);
  EXPECT_EQ(hw.dense_bf16_flops, base.dense_bf16_flops);
  EXPECT_EQ(hw.sm_count, base.sm_count);
  EXPECT_EQ(hw.d2h_bandwidth_Bps, base.d2h_bandwidth_Bps);
  EXPECT_EQ(hw.host_memory_bytes, base.host_memory_bytes);
  EXPECT_EQ(hw.host_memory_bandwidth_Bps, base.host_memory_bandwidth_Bps);
  EXPECT_EQ(hw.kernel_launch_overhead_s, base.kernel_launch_overhead_s);
  EXPECT_EQ(hw.kernel_gap_s, base.kernel_gap_s);
  EXPECT_EQ(hw.hbm_efficiency, base.hbm_efficiency);
  EXPECT_EQ(hw.compute_efficiency, base.compute_efficiency);
  EXPECT_EQ(hw.gather_row_efficiency, base.gather_row_efficiency);
  EXPECT_EQ(hw.sources.at("gpu_memory_bytes"), "test: 80 GiB");
  EXPECT_EQ(hw.sources.at("gather_row_efficiency"), "test curve");
  // The base is a value: unchanged.
  EXPECT_EQ(base.h2d_bandwidth_Bps, 2.77e10);
}

TEST(Hardware, OverridesKeepGivenSourceAndCurve) {
  const Hardware base = parse_hardware(card(), kOrigin);
  const Hardware hw = with_overrides(
      base,
      json{{"hbm_bandwidth_Bps", {{"value", 4.8e12}, {"source", "what-if: HBM3e"}}},
           {"gather_row_efficiency", {{512, 0.5}, {2048, 0.8}}}},
      "experiment.json");
  EXPECT_EQ(hw.hbm_bandwidth_Bps, 4.8e12);
  EXPECT_EQ(hw.sources.at("hbm_bandwidth_Bps"), "what-if: HBM3e");
  EXPECT_NEAR(hw.gather_efficiency(1024), 0.65, 1e-12);  // halfway (log) between 512 and 2048
  EXPECT_EQ(hw.h2d_bandwidth_Bps, base.h2d_bandwidth_Bps);
}

TEST(Hardware, OverridesNullIsNoChange) {
  const Hardware base = parse_hardware(card(), kOrigin);
  const Hardware hw = with_overrides(base, json(), "experiment.json");
  EXPECT_EQ(hw.h2d_bandwidth_Bps, base.h2d_bandwidth_Bps);
  EXPECT_EQ(hw.origin, base.origin);
}

TEST(Hardware, OverridesRejectUnknownField) {
  const Hardware base = parse_hardware(card(), kOrigin);
  expect_config_error([&] { with_overrides(base, json{{"pcie_generation", 5}}, "experiment.json"); }, "experiment.json",
                      "pcie_generation");
}

TEST(Hardware, OverridesRejectBadValueAndNonObject) {
  const Hardware base = parse_hardware(card(), kOrigin);
  expect_config_error([&] { with_overrides(base, json{{"hbm_efficiency", 1.5}}, "experiment.json"); }, "experiment.json",
                      "hbm_efficiency");
  expect_config_error([&] { with_overrides(base, json{{"h2d_bandwidth_Bps", -1}}, "experiment.json"); }, "experiment.json",
                      "h2d_bandwidth_Bps");
  expect_config_error([&] { with_overrides(base, json::array({1}), "experiment.json"); }, "experiment.json",
                      "hardware_overrides");
}

// bench --hw auto: the device's name picks its file of configs/hardware/.
TEST(Hardware, TheDeviceNamePicksItsFile) {
  const std::filesystem::path dir = configs_dir() / "hardware";
  auto stem = [&](const std::string& device) {
    const auto p = hardware_for_device(device, dir);
    return p ? p->stem().string() : std::string("none");
  };
  EXPECT_EQ(stem("NVIDIA H200"), "h200") << "the calibrated file is left out";
  EXPECT_EQ(stem("NVIDIA H100 80GB HBM3"), "h100-sxm");
  EXPECT_EQ(stem("NVIDIA GH200 480GB"), "gh200");
  EXPECT_EQ(stem("NVIDIA A100-SXM4-80GB"), "a100-80g");
  EXPECT_EQ(stem("NVIDIA GeForce RTX 4090"), "rtx4090");
  EXPECT_EQ(stem("NVIDIA GeForce RTX 4060 Laptop GPU"), "rtx4060-laptop");
  EXPECT_EQ(stem("NVIDIA H100 PCIe"), "none") << "a PCIe card is not the SXM file";
  EXPECT_EQ(stem("Tesla V100-SXM2-16GB"), "none");
  EXPECT_EQ(stem(""), "none");
  EXPECT_FALSE(hardware_for_device("NVIDIA H200", "/nonexistent/hardware"));
}

TEST(Hardware, TwoFilesForOneDeviceNameNeither) {
  specontext::testing::TempDir dir;
  std::ofstream(dir.path() / "h200.json") << R"({"name": "NVIDIA H200 SXM 141GB"})";
  std::ofstream(dir.path() / "h200-nvl.json") << R"({"name": "NVIDIA H200 NVL"})";
  EXPECT_FALSE(hardware_for_device("NVIDIA H200", dir.path()));
  std::filesystem::remove(dir.path() / "h200-nvl.json");
  ASSERT_TRUE(hardware_for_device("NVIDIA H200", dir.path()));
  EXPECT_EQ(hardware_for_device("NVIDIA H200", dir.path())->filename(), "h200.json");
}
