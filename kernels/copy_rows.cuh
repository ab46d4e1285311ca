#pragma once
// Row copies with optional row maps, converting to bf16: the engine's feature export (the residual
// streams entering the retrieval head's aux layers, fp32, stored by request slot) and the gather of
// those rows back into a decode batch (bf16).
//   dst[dst_row(i) * dst_stride + c] = bf16(src[src_row(i) * src_stride + c]),  i < rows, c < cols,
// with src_row(i) = src_rows ? src_rows[i] : i and dst_row(i) likewise. Rows of dst that no i maps to,
// and columns past cols, are untouched, so several copies can fill one wide row side by side.
// One block per row.
#include <cuda_runtime.h>

#include <cstdint>

namespace specontext::kernels {

struct CopyRowsParams {
  const void* src = nullptr;               // fp32 or bf16 (src_f32), [.., src_stride]
  bool src_f32 = true;
  std::int64_t src_stride = 0;             // elements
  const std::int32_t* src_rows = nullptr;  // device [rows] or nullptr (identity)
  std::uint16_t* dst = nullptr;            // bf16 [.., dst_stride]
  std::int64_t dst_stride = 0;             // elements
  const std::int32_t* dst_rows = nullptr;  // device [rows] or nullptr (identity)
  std::int64_t rows = 0;
  std::int64_t cols = 0;
};

void launch_copy_rows(const CopyRowsParams& p, cudaStream_t stream);

}  // namespace specontext::kernels
