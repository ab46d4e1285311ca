#include "sim/least_squares.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace specontext {
namespace {

Eigen::VectorXd clip(const Eigen::VectorXd& x, const LeastSquaresProblem& p) { return x.cwiseMax(p.lower).cwiseMin(p.upper); }

}  // namespace

Eigen::MatrixXd numerical_jacobian(const LeastSquaresProblem& p, const Eigen::VectorXd& x, const Eigen::VectorXd& r) {
  Eigen::MatrixXd J = Eigen::MatrixXd::Zero(r.size(), x.size());
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const double h = p.difference_step;
    const bool up = x[i] + h <= p.upper[i], down = x[i] - h >= p.lower[i];
    Eigen::VectorXd xp = x, xm = x;
    if (up && down) {
      xp[i] += h;
      xm[i] -= h;
      J.col(i) = (p.residuals(xp) - p.residuals(xm)) / (2 * h);
    } else if (up) {
      xp[i] += h;
      J.col(i) = (p.residuals(xp) - r) / h;
    } else if (down) {
      xm[i] -= h;
      J.col(i) = (r - p.residuals(xm)) / h;
    }  // a box narrower than the step: the coordinate is fixed, its column stays zero
  }
  return J;
}

LeastSquaresResult levenberg_marquardt(const LeastSquaresProblem& p) {
  const Eigen::Index n = p.start.size();
  if (p.lower.size() != n || p.upper.size() != n) throw std::invalid_argument("levenberg_marquardt: bounds differ in size from the start");
  if ((p.lower.array() > p.upper.array()).any()) throw std::invalid_argument("levenberg_marquardt: a lower bound exceeds its upper bound");
  LeastSquaresResult out;
  out.x = clip(p.start, p);
  out.residuals = p.residuals(out.x);
  out.cost = out.residuals.squaredNorm();
  double lambda = 1e-3;
  for (out.iterations = 0; out.iterations < p.max_iterations && !out.converged; ++out.iterations) {
    if (out.cost == 0) {
      out.converged = true;
      break;
    }
    const Eigen::MatrixXd J = numerical_jacobian(p, out.x, out.residuals);
    // Coefficient-wise products: a handful of parameters needs no blocked GEMM.
    const Eigen::MatrixXd A = J.transpose().lazyProduct(J);
    const Eigen::VectorXd g = J.transpose().lazyProduct(out.residuals);
    // Marquardt's scaling by diag(J'J), plus a little of the identity so that a parameter the
    // residuals do not depend on (a zero column) still gives a solvable system and does not move.
    const double floor = 1e-9 * std::max(1.0, A.diagonal().maxCoeff());
    while (true) {
      Eigen::MatrixXd M = A;
      M.diagonal() += lambda * (A.diagonal().array() + floor).matrix();
      const Eigen::VectorXd x_new = clip(out.x - M.ldlt().solve(g), p);
      if ((x_new - out.x).norm() <= 1e-15 * (1.0 + out.x.norm())) {
        out.converged = true;  // the box or a vanishing gradient holds x where it is
        break;
      }
      const Eigen::VectorXd r_new = p.residuals(x_new);
      const double cost_new = r_new.squaredNorm();
      if (std::isfinite(cost_new) && cost_new < out.cost) {
        const double gain = (out.cost - cost_new) / out.cost;
        out.x = x_new;
        out.residuals = r_new;
        out.cost = cost_new;
        lambda = std::max(lambda / 3.0, 1e-12);
        if (gain < p.tolerance) out.converged = true;
        break;
      }
      lambda *= 4.0;
      if (lambda > 1e12) {  // no step in any direction lowers the cost: a minimum, to the differences' accuracy
        out.converged = true;
        break;
      }
    }
  }
  out.jacobian = numerical_jacobian(p, out.x, out.residuals);
  return out;
}

}  // namespace specontext
