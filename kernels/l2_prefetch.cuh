#pragma once
// Pull a span of global memory (the next projection's weights) into L2 while the decode step's
// latency-bound kernels run. At one request a layer's RoPE + KV append, attention split and merge,
// the two RMSNorms and SwiGLU take a few microseconds each and leave HBM almost idle; the weights
// the next projection streams do not depend on them, so a copy engine can bring the head of those
// weights into L2 meanwhile and the projection finds them there.
//
// One thread per 64 KB chunk issues cp.async.bulk.prefetch.L2 (sm_90: the bulk-copy unit does the
// reads; no registers wait and no thread stays behind for them). A prefetch is a hint: nothing is
// written, so it cannot change any result, and on devices below sm_90 nothing is launched.
// Requirements (std::invalid_argument naming the field otherwise): ptr 16-byte aligned; bytes is
// rounded down to a multiple of 16; 0 bytes launches nothing.
#include <cuda_runtime.h>

#include <cstddef>

namespace specontext::kernels {

void launch_l2_prefetch(const void* ptr, std::size_t bytes, cudaStream_t stream);

}  // namespace specontext::kernels
