// The CUDA devices: on a GPU machine our test kernel must run; elsewhere the test skips.
#include <gtest/gtest.h>

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
