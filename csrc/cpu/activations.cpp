// relu, tanh and sigmoid on the CPU, forward and backward, over flat float arrays.
//
// Forward runs the vectorised kernels of vmath.h (AVX-512, AVX2+FMA or portable C++, the ISA
// sgemm_isa() picked): the activation is chosen once per call and each kernel is a straight
// vector loop, no per-element call. Large arrays are cut into fixed chunks spread over the
// OpenMP threads (the chunking does not depend on the thread count, so neither do the bits).
// Backward takes the forward OUTPUT y: relu' = (y > 0), tanh' = 1 - y^2, sigmoid' = y (1 - y);
// those are one multiply-add a element, plain loops the compiler vectorises.
#include <algorithm>

#include "cpu/vmath.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

static constexpr int64_t kChunk = 1 << 14;         // elements per work item
static constexpr int64_t kParallelMin = 1 << 15;   // below this, one thread

void activation_forward(Activation act, const float* x, float* y, int64_t n) {
  const VecFn f = activation_kernel(vec_math(), act);
  if (act == Activation::None && x == y) return;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
    f(x + i0, 0.f, y + i0, len);
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
      for (int64_t i = 0; i < n; ++i) {
        // Load dy unconditionally: `y > 0 ? dy[i] : 0` reads dy only on one side, which keeps
        // GCC from turning the loop into a branch-free vector select (a mispredicted branch
        // per element on random data, 7x slower).
        const float g = dy[i];
        dx[i] = y[i] > 0.f ? g : 0.f;
      }
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
