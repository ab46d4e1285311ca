#include "kernels/programmatic_launch.cuh"

#include <atomic>

#include "kernels/device_properties.cuh"

namespace specontext::kernels {
namespace {

std::atomic<bool> g_enabled{true};

}  // namespace

void set_programmatic_launch(bool on) { g_enabled.store(on); }

ProgrammaticLaunch programmatic_launch() {
  ProgrammaticLaunch l;
  if (!g_enabled.load(std::memory_order_relaxed) || compute_capability_major() < 9) return l;
  l.attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  l.attribute.val.programmaticStreamSerializationAllowed = 1;
  l.count = 1;
  return l;
}

}  // namespace specontext::kernels
