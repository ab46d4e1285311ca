#include "kernels/programmatic_launch.cuh"

#include <atomic>
#include <map>
#include <mutex>

#include "kernels/device_properties.cuh"

namespace specontext::kernels {
namespace {

std::atomic<bool> g_enabled{true};

}  // namespace

void set_programmatic_launch(bool on) { g_enabled.store(on); }

// The compute capability the kernel's loaded binary was built for (e.g. 90), 0 if it cannot be read.
int binary_version(const void* kernel) {
  cudaFuncAttributes a{};
  if (cudaFuncGetAttributes(&a, kernel) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return a.binaryVersion;
}

ProgrammaticLaunch programmatic_launch(const void* kernel) {
  ProgrammaticLaunch l;
  if (!g_enabled.load(std::memory_order_relaxed) || compute_capability_major() < 9) return l;
  // One kernel per call site today; read once per kernel (the build has one architecture).
  static std::mutex mutex;
  static std::map<const void*, int> versions;
  int version = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = versions.find(kernel);
    if (it == versions.end()) it = versions.emplace(kernel, binary_version(kernel)).first;
    version = it->second;
  }
  if (version < 90) return l;
  l.attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  l.attribute.val.programmaticStreamSerializationAllowed = 1;
  l.count = 1;
  return l;
}

}  // namespace specontext::kernels
