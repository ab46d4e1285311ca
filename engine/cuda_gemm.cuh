#pragma once
// The engine's projections: Y[T, out] = X[T, in] W[out, in]^T, row-major, bf16 inputs, fp32
// accumulation, Y in bf16 or fp32. Up to 16 rows (decode of few requests) our streaming kernel, which
// reads W at a higher rate than cuBLAS's split-K GEMV paths and takes the next kernel into its
// epilogue; more rows go to cuBLAS. Capturable in a CUDA graph (cuBLAS gets a fixed workspace).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rope_kv_append.cuh"

namespace specontext {

struct CudaGemm {
  cublasHandle_t cublas = nullptr;
  cudaStream_t stream = nullptr;
  void operator()(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* W, std::int64_t out, void* Y,
                  cudaDataType y_type) const;
  // The projection and the kernel after it in a decode layer. Where small_gemm takes the shape (up
  // to 16 rows) they are one kernel (kernels/small_gemm.cuh's fused epilogues: one launch less, same
  // bits); otherwise (more rows, an `in` that is not a multiple of 8, for QKV a head_dim that is
  // not a multiple of 16, for gate_up an ffn that is not a multiple of 8) the projection and then
  // the separate kernel. QKV with a bias or q/k norms does not come here (cuda_backend.cu runs
  // those between the projection and RoPE).
  // QKV = X Wqkv^T into r.qkv (row stride r.row_stride, r.tokens rows), then RoPE and the KV append
  // of kernels/rope_kv_append.cuh with r.
  void qkv_rope_append(const std::uint16_t* X, std::int64_t in, const std::uint16_t* Wqkv, const kernels::RopeKvAppendParams& r) const;
  // act[T, ffn] = SwiGLU of X Wgate_up^T (kernels/swiglu.cuh); gate_up [T, 2 ffn] is the unfused
  // path's scratch (not written up to 16 rows).
  void gate_up_swiglu(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* Wgate_up, std::int64_t ffn,
                      std::uint16_t* gate_up, std::uint16_t* act) const;
};

}  // namespace specontext

#define SPECONTEXT_CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                              \
    cublasStatus_t st_ = (call);                                                                                    \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                               \
      throw std::runtime_error(std::string("cuBLAS error ") + cublasGetStatusString(st_) + " in " + #call + " at " + \
                               __FILE__ + ":" + std::to_string(__LINE__));                                           \
  } while (0)
