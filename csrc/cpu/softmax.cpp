// Softmax over the last axis and the fused softmax + cross-entropy, on the CPU.
//
//   x, logits are (rows, cols); labels (rows) are class indices, already range-checked.
//   softmax:  y = exp(x - max) / sum exp(x - max)             (max-subtracted, never overflows)
//   loss   :  mean over rows of  log(sum exp(x - max)) - (x[label] - max)
//   dlogits:  (softmax - onehot(label)) / rows
// The exponentials run through the vectorised exp of vmath.h as exp(x + shift), shift = -max.
#include <cmath>

#include "common/parallel.h"
#include "cpu/vmath.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  const VecFn vexp = vec_math().exp;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (rows * cols > (1 << 15))
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = x + i * cols;
    float* yr = y + i * cols;
    float m = xr[0];
    for (int64_t j = 1; j < cols; ++j) m = xr[j] > m ? xr[j] : m;
    vexp(xr, -m, yr, cols);
    float s = 0.f;
    for (int64_t j = 0; j < cols; ++j) s += yr[j];
    const float inv = 1.f / s;
    for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
  }
}

float softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits, int64_t N,
                            int64_t C) {
  const VecFn vexp = vec_math().exp;
  double total = 0.0;
  const float invN = 1.f / float(N);
#pragma omp parallel for schedule(static) num_threads(omp_threads()) reduction(+ : total) if (N * C > (1 << 15))
  for (int64_t i = 0; i < N; ++i) {
    const float* xr = logits + i * C;
    float* dr = dlogits + i * C;
    float m = xr[0];
    for (int64_t j = 1; j < C; ++j) m = xr[j] > m ? xr[j] : m;
    vexp(xr, -m, dr, C);
    float s = 0.f;
    for (int64_t j = 0; j < C; ++j) s += dr[j];
    const int64_t t = labels[i];
    total += double(std::log(s)) - double(xr[t] - m);
    const float scale = invN / s;
    for (int64_t j = 0; j < C; ++j) dr[j] *= scale;
    dr[t] -= invN;
  }
  return static_cast<float>(total / double(N));
}

}  // namespace cpu
}  // namespace fastconv
