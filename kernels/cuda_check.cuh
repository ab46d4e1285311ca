#pragma once
// Every CUDA call is checked: the failing call, file and line go into the exception.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define SPECONTEXT_CUDA_CHECK(call)                                                                         \
  do {                                                                                                       \
    cudaError_t specontext_err_ = (call);                                                                    \
    if (specontext_err_ != cudaSuccess)                                                                      \
      throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(specontext_err_) + " in " + \
                               #call + " at " + __FILE__ + ":" + std::to_string(__LINE__));                  \
  } while (0)

// After a kernel launch: launch errors now, execution errors at the next synchronising call.
#define SPECONTEXT_CUDA_CHECK_LAUNCH() SPECONTEXT_CUDA_CHECK(cudaGetLastError())
