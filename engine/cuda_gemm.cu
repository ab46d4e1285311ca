#include "engine/cuda_gemm.cuh"

#include <stdexcept>
#include <string>

#include "kernels/small_gemm.cuh"
#include "kernels/swiglu.cuh"

namespace specontext {

namespace {
// The fused kernels' eligibility: small_gemm's rows and in, and the epilogue's own shape rules.
bool small_rows(std::int64_t T, std::int64_t in) { return T <= 8 && in % 8 == 0; }
}  // namespace

void CudaGemm::operator()(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* W, std::int64_t out, void* Y,
                          cudaDataType y_type) const {
  if (small_rows(T, in)) {
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

void CudaGemm::qkv_rope_append(const std::uint16_t* X, std::int64_t in, const std::uint16_t* Wqkv, const kernels::RopeKvAppendParams& r) const {
  const std::int64_t out = (r.q_heads + r.kv_heads + (r.v_cache != nullptr ? r.kv_heads : 0)) * r.head_dim;
  if (small_rows(r.tokens, in) && r.head_dim % 16 == 0) {
    kernels::SmallGemmParams p;
    p.x = X;
    p.w = Wqkv;
    p.y_bf16 = r.qkv;
    p.tokens = r.tokens;
    p.out = out;
    p.in = in;
    p.x_stride = in;
    p.y_stride = r.row_stride;
    p.epilogue = kernels::SmallGemmEpilogue::RopeKvAppend;
    p.rope = r;
    kernels::launch_small_gemm(p, stream);
    return;
  }
  if (r.row_stride != out) throw std::invalid_argument("CudaGemm::qkv_rope_append: row_stride " + std::to_string(r.row_stride) + " is not the " + std::to_string(out) + " QKV columns");
  (*this)(X, r.tokens, in, Wqkv, out, r.qkv, CUDA_R_16BF);
  kernels::launch_rope_kv_append(r, stream);
}

void CudaGemm::gate_up_swiglu(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* Wgate_up, std::int64_t ffn,
                              std::uint16_t* gate_up, std::uint16_t* act) const {
  if (small_rows(T, in) && ffn % 8 == 0) {
    kernels::SmallGemmParams p;
    p.x = X;
    p.w = Wgate_up;
    p.y_bf16 = act;
    p.tokens = T;
    p.out = 2 * ffn;
    p.in = in;
    p.x_stride = in;
    p.y_stride = ffn;
    p.epilogue = kernels::SmallGemmEpilogue::SwiGlu;
    kernels::launch_small_gemm(p, stream);
    return;
  }
  (*this)(X, T, in, Wgate_up, 2 * ffn, gate_up, CUDA_R_16BF);
  kernels::launch_swiglu({gate_up, act, T, ffn, 2 * ffn, ffn}, stream);
}

}  // namespace specontext
