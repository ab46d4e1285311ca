// The CUDA devices: on a GPU machine our test kernel must run; elsewhere the test skips.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/device_info.hpp"

namespace specontext {
namespace {

TEST(Devices, OurKernelsRunOnEveryDevice) {
  const DeviceReport r = query_devices();
  if (r.devices.empty()) GTEST_SKIP() << "no CUDA device: " << r.error;
  for (const auto& d : r.devices) {
    EXPECT_TRUE(d.kernel_runs) << d.name << ": " << d.kernel_error;
    EXPECT_GT(d.sm_count, 0);
    EXPECT_GT(d.memory_bytes, 1e9);
    EXPECT_GT(d.free_bytes, 0);
    EXPECT_GT(d.peak_memory_bandwidth_Bps, 1e11);
  }
  EXPECT_GT(r.driver_version, 0);
}

TEST(Devices, ReportSaysHowItWasBuilt) {
  const DeviceReport r = query_devices();
  const auto j = to_json(r);
  EXPECT_EQ(j["cuda_built"].get<bool>(), r.cuda_built);
  if (!r.cuda_built) {
    EXPECT_NE(r.error.find("without CUDA"), std::string::npos);
  }
}

}  // namespace
}  // namespace specontext

namespace specontext {
namespace {

TEST(Devices, DriverReleaseFromTheProcFile) {
  const auto path = std::filesystem::temp_directory_path() / "specontext-nvidia-version";
  {
    std::ofstream out(path);
    out << "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue Oct 28 10:00:00 UTC 2026\nGCC version: gcc 13\n";
  }
  EXPECT_EQ(nvidia_driver_release(path.string()), "580.159.04");
  std::filesystem::remove(path);
  EXPECT_EQ(nvidia_driver_release("/no/such/file"), "");
}

}  // namespace
}  // namespace specontext
