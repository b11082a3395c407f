// relu, tanh and sigmoid on the CPU, forward and backward, over flat float arrays.
//
// The activation is chosen once per call (a switch outside the loop), so each loop is a plain
// element-wise loop the compiler vectorises; large arrays are split over OpenMP threads.
// Backward takes the forward OUTPUT y: relu' = (y > 0), tanh' = 1 - y^2, sigmoid' = y (1 - y).
#include <cmath>

#include "ops.h"

namespace fastconv {
namespace cpu {

static constexpr int64_t kParallelMin = 1 << 15;

void activation_forward(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::None:
      if (x != y) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) y[i] = x[i];
      }
      break;
    case Activation::ReLU:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
      break;
    case Activation::Tanh:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case Activation::Sigmoid:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
      break;
  }
}

void activation_backward(Activation act, const float* dy, const float* y, float* dx, int64_t n) {
  switch (act) {
    case Activation::None:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
    case Activation::ReLU:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
      break;
    case Activation::Tanh:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.f - y[i] * y[i]);
      break;
    case Activation::Sigmoid:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.f - y[i]);
      break;
  }
}

}  // namespace cpu
}  // namespace fastconv
