#include "kernels/programmatic_launch.cuh"

#include <atomic>

#include "kernels/device_properties.cuh"

namespace specontext::kernels {
namespace {

std::atomic<bool> g_enabled{true};

// The compute capability the kernel's loaded binary was built for (e.g. 90), 0 if it cannot be read.
int binary_version(const void* kernel) {
  cudaFuncAttributes a{};
  if (cudaFuncGetAttributes(&a, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return a.binaryVersion;
}

}  // namespace

void set_programmatic_launch(bool on) { g_enabled.store(on); }

ProgrammaticLaunch programmatic_launch(const void* kernel) {
  ProgrammaticLaunch l;
  if (!g_enabled.load(std::memory_order_relaxed) || compute_capability_major() < 9) return l;
  // Every kernel of this library is built for the same architectures, so the first one asked about
  // answers for all: read once, off the launch path after that.
  static const int version = binary_version(kernel);
  if (version < 90) return l;
  l.attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  l.attribute.val.programmaticStreamSerializationAllowed = 1;
  l.count = 1;
  return l;
}

}  // namespace specontext::kernels
