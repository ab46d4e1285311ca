#include "engine/cpu_ops.hpp"

#include <cmath>

namespace specontext::cpu {

RowMatrix linear(const RowMatrix& x, const Matrix& w, const std::vector<float>& bias) {
  const ConstRowMap weight(w.data.data(), w.rows, w.cols);
  RowMatrix y = x * weight.transpose();
  if (!bias.empty()) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.data(), static_cast<Eigen::Index>(bias.size()));
  return y;
}

RowMatrix rms_norm(const RowMatrix& x, const std::vector<float>& weight, double eps) {
  const Eigen::Index width = static_cast<Eigen::Index>(weight.size());
  const float eps_f = static_cast<float>(eps);
  RowMatrix y(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index g = 0; g < x.cols(); g += width) {
      double sum_squares = 0.0;
      for (Eigen::Index i = 0; i < width; ++i) sum_squares += static_cast<double>(x(r, g + i)) * x(r, g + i);
      const float mean_square = static_cast<float>(sum_squares / static_cast<double>(width));
      const float inv_rms = 1.0f / std::sqrt(mean_square + eps_f);
      for (Eigen::Index i = 0; i < width; ++i) y(r, g + i) = weight[i] * (x(r, g + i) * inv_rms);
    }
  }
  return y;
}

void apply_rope(RowMatrix& x, Eigen::Index r, std::int64_t position, long long head_dim, const std::vector<float>& inv_freq,
                float attention_factor) {
  const long long half = head_dim / 2;
  for (long long i = 0; i < half; ++i) {
    // transformers forms the angle as a float32 product, then cos/sin of it.
    const float angle = static_cast<float>(position) * inv_freq[i];
    const float c = std::cos(angle) * attention_factor, s = std::sin(angle) * attention_factor;
    for (Eigen::Index g = 0; g < x.cols(); g += head_dim) {
      const float x1 = x(r, g + i), x2 = x(r, g + i + half);
      x(r, g + i) = x1 * c - x2 * s;
      x(r, g + i + half) = x2 * c + x1 * s;
    }
  }
}

void softmax_in_place(Eigen::Ref<Eigen::VectorXf> scores) {
  const float max_score = scores.maxCoeff();
  scores = (scores.array() - max_score).exp();
  scores /= scores.sum();
}

}  // namespace specontext::cpu
