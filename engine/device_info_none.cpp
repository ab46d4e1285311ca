// query_devices() for builds without CUDA.
#include "engine/device_info.hpp"

namespace specontext {

DeviceReport query_devices() {
  DeviceReport r;
  r.error = "built without CUDA (no nvcc was found at configure time)";
  return r;
}

}  // namespace specontext
