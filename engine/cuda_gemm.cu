#include "engine/cuda_gemm.cuh"

#include <stdexcept>
#include <string>

#include "kernels/small_gemm.cuh"

namespace specontext {

void CudaGemm::operator()(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* W, std::int64_t out, void* Y,
                          cudaDataType y_type) const {
  if (T <= 8 && in % 8 == 0) {
    kernels::SmallGemmParams p;
    p.x = X;
    p.w = W;
    if (y_type == CUDA_R_32F) p.y_f32 = static_cast<float*>(Y);
    else p.y_bf16 = static_cast<std::uint16_t*>(Y);
    p.tokens = T;
    p.out = out;
    p.in = in;
    p.x_stride = in;
    p.y_stride = out;
    kernels::launch_small_gemm(p, stream);
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  SPECONTEXT_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(T), static_cast<int>(in), &alpha,
                                       W, CUDA_R_16BF, static_cast<int>(in), X, CUDA_R_16BF, static_cast<int>(in), &beta, Y, y_type,
                                       static_cast<int>(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace specontext
