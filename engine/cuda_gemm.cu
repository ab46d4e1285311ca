#include "engine/cuda_gemm.cuh"

#include <stdexcept>
#include <string>

#include "kernels/small_gemm.cuh"
#include "kernels/swiglu.cuh"

namespace specontext {

namespace {
// small_gemm takes up to 16 rows and an `in` that is a multiple of 8, and its fused epilogues
// (SwiGLU, RoPE + KV append) are used wherever it runs. At 4 rows and fewer they were faster than
// the separate kernels from the start; at 8 rows (8K keys, H100) they were 5% slower until
// small_gemm released the down projection only after the fused gate_up's loop and the merge
// stopped releasing the O projection early (bench/README, "Fused epilogues"). At 16 rows the step
// was 3.8-6.7% faster than with cuBLAS and the separate kernels (two H100 calls), at 32 rows (with
// 4 n-tiles) 2.3-4.5% slower (H100; bench/README, "small_gemm above 8 rows" and "Up to 16 rows").
bool small_rows(std::int64_t T, std::int64_t in) { return T <= 16 && in % 8 == 0; }
}  // namespace

void CudaGemm::operator()(const std::uint16_t* X, std::int64_t T, std::int64_t in, const std::uint16_t* W, std::int64_t out, void* Y,
                          cudaDataType y_type) const {
  if (small_rows(T, in)) {
    kernels::SmallGemmParams p = kernels::contiguous_small_gemm(X, W, T, out, in);
    if (y_type == CUDA_R_32F) p.y_f32 = static_cast<float*>(Y);
    else p.y_bf16 = static_cast<std::uint16_t*>(Y);
    kernels::launch_small_gemm(p, stream);
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  SPECONTEXT_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(T), static_cast<int>(in), &alpha,
                                       W, CUDA_R_16BF, static_cast<int>(in), X, CUDA_R_16BF, static_cast<int>(in), &beta, Y, y_type,
                                       static_cast<int>(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaGemm::qkv_rope_append(const std::uint16_t* X, std::int64_t in, const std::uint16_t* Wqkv, const kernels::RopeKvAppendParams& r) const {
  const std::int64_t out = kernels::qkv_row_heads(r) * r.head_dim;
  if (small_rows(r.tokens, in) && r.head_dim % 16 == 0) {
    kernels::SmallGemmParams p = kernels::contiguous_small_gemm(X, Wqkv, r.tokens, out, in);
    p.y_bf16 = r.qkv;
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
    kernels::SmallGemmParams p = kernels::contiguous_small_gemm(X, Wgate_up, T, 2 * ffn, in);
    p.y_bf16 = act;
    p.y_stride = ffn;
    p.epilogue = kernels::SmallGemmEpilogue::SwiGlu;
    kernels::launch_small_gemm(p, stream);
    return;
  }
  (*this)(X, T, in, Wgate_up, 2 * ffn, gate_up, CUDA_R_16BF);
  kernels::launch_swiglu({gate_up, act, T, ffn, 2 * ffn, ffn}, stream);
}

}  // namespace specontext
