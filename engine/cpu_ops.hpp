#pragma once
// The CPU reference's building blocks (fp32, Eigen, row-major rows of tokens), shared by the
// backend (engine/cpu_backend.cpp) and the retrieval head (engine/retrieval_head.cpp), so that
// both normalise, project, rotate and take softmaxes with the same arithmetic.
#include <Eigen/Core>

#include <cstdint>
#include <vector>

#include "engine/weights.hpp"

namespace specontext::cpu {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;

// y = x W^T (+ b), W row-major [out, in] as PyTorch stores a Linear.
RowMatrix linear(const RowMatrix& x, const Matrix& w, const std::vector<float>& bias = {});

// RMSNorm over each consecutive group of `weight.size()` values in every row (the row for layer
// norms, head_dim for Qwen3's per-head q/k norms), as transformers: x * rsqrt(mean(x^2) + eps) * w.
RowMatrix rms_norm(const RowMatrix& x, const std::vector<float>& weight, double eps);

// Rotates every head of row r at `position` in place (rotate_half: pairs (i, i + head_dim/2)),
// with the frequencies of engine/rope.hpp.
void apply_rope(RowMatrix& x, Eigen::Index r, std::int64_t position, long long head_dim, const std::vector<float>& inv_freq,
                float attention_factor);

// Softmax of a row of attention scores, in place (the maximum subtracted first).
void softmax_in_place(Eigen::Ref<Eigen::VectorXf> scores);

}  // namespace specontext::cpu
