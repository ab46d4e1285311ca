#pragma once
// Bounded nonlinear least squares by Levenberg-Marquardt: minimises |r(x)|^2 over a box, with the
// Jacobian by central differences (the simulator's step time is a schedule's longest path, piecewise
// smooth in its parameters, with no derivatives to hand) and each step's normal equations
// (J'J + lambda diag(J'J) + lambda mu I) dx = -J'r solved with Eigen. Steps leaving the box are
// clipped to it; a step is kept only if it lowers the cost.
#include <functional>

// GCC 12 with -march=native warns inside its own AVX-512 intrinsics as Eigen's reductions use them
// (a false -Wmaybe-uninitialized of `__Y = __Y`); the warnings point into those headers, so they are
// silenced where the headers come in.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop

namespace specontext {

struct LeastSquaresProblem {
  std::function<Eigen::VectorXd(const Eigen::VectorXd&)> residuals;
  Eigen::VectorXd start, lower, upper;
  double difference_step = 1e-4;  // of the central differences, in x's units
  int max_iterations = 200;
  double tolerance = 1e-12;  // stop when a kept step lowers the cost by less than this, relatively
};

struct LeastSquaresResult {
  Eigen::VectorXd x;
  Eigen::VectorXd residuals;
  Eigen::MatrixXd jacobian;  // at x
  double cost = 0;           // |r(x)|^2
  int iterations = 0;
  bool converged = false;  // false: stopped at max_iterations
};

LeastSquaresResult levenberg_marquardt(const LeastSquaresProblem& p);

// d r / d x at x by central differences, one-sided where x sits on a bound.
Eigen::MatrixXd numerical_jacobian(const LeastSquaresProblem& p, const Eigen::VectorXd& x, const Eigen::VectorXd& r);

}  // namespace specontext
