// The dense (linear) layer on the CPU, on the same GEMM as conv2d.
//
//   x is (N, I)   w is (O, I) (PyTorch's layout)   b is (O)   y is (N, O)
//   forward   y  = act(x . w^T + b)      bias preloaded into y, GEMM with beta 1
//   backward  dx = dy . w   (N, O).(O, I)
//             dw = dy^T . x (O, N).(N, I)
//             db = column sums of dy
#include "common/parallel.h"
#include "cpu/gemm/sgemm.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t I,
                    int64_t O, Activation act, float alpha) {
  if (b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) y[n * O + o] = b[o];
  sgemm(false, true, N, O, I, 1.f, x, I, w, I, b ? 1.f : 0.f, y, O);
  if (act != Activation::None) activation_forward(act, y, y, N * O, alpha);
}

void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, int64_t N, int64_t I, int64_t O) {
  if (dx) sgemm(false, false, N, I, O, 1.f, dy, O, w, I, 0.f, dx, I);
  if (dw) sgemm(true, false, O, I, N, 1.f, dy, O, x, I, 0.f, dw, I);
  if (db) {
    for (int64_t o = 0; o < O; ++o) db[o] = 0.f;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) db[o] += dy[n * O + o];
  }
}

}  // namespace cpu
}  // namespace fastconv
