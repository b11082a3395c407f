// conv2d on the CPU: im2col + GEMM, one image at a time, images spread over OpenMP threads.
//
//   x  is (N, C, H, W)    w  is (K, C, R, S) = a (K, C*R*S) matrix    b is (K)
//   y  is (N, K, P, Q)    per image y_n (K, P*Q) = w (K, CRS) . col_n (CRS, P*Q) + b
//
// forward          y_n  = act(w . im2col(x_n) + b)          bias preloaded, GEMM with beta 1
// backward input   dx_n = col2im(w^T . dy_n)                 (CRS, K) . (K, PQ), then scatter-add
// backward weight  dw   = sum_n dy_n . im2col(x_n)^T         (K, PQ) . (PQ, CRS), per-thread sums
// backward bias    db   = sum over n, p, q of dy
//
// A 1x1 filter with stride 1 and no padding reads x_n directly as its col matrix (ATen does the
// same). The im2col buffer is a per-thread workspace reused across calls.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "cpu/gemm/sgemm.h"
#include "cpu/im2col.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

static bool is_pointwise(const Conv2dParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, Activation act) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  const bool pointwise = is_pointwise(p);
#pragma omp parallel for schedule(static) if (p.N > 1)
  for (int64_t n = 0; n < p.N; ++n) {
    const float* xn = x + n * CHW;                 // (C, H, W)
    float* yn = y + n * p.K * PQ;                  // (K, P*Q)
    const float* col = xn;                         // (CRS, P*Q)
    if (!pointwise) {
      float* buf = thread_workspace(0, CRS * PQ);
      im2col(xn, buf, p);
      col = buf;
    }
    if (b) for (int64_t k = 0; k < p.K; ++k) { float* row = yn + k * PQ; for (int64_t i = 0; i < PQ; ++i) row[i] = b[k]; }
    sgemm(false, false, p.K, PQ, CRS, 1.f, w, CRS, col, PQ, b ? 1.f : 0.f, yn, PQ);
    if (act != Activation::None) activation_forward(act, yn, yn, p.K * PQ);
  }
}

void conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  const bool pointwise = is_pointwise(p);
#pragma omp parallel for schedule(static) if (p.N > 1)
  for (int64_t n = 0; n < p.N; ++n) {
    const float* dyn = dy + n * p.K * PQ;          // (K, P*Q)
    float* dxn = dx + n * CHW;                     // (C, H, W)
    if (pointwise) {                               // dx_n (C, HW) = w^T (C, K) . dy_n (K, HW)
      sgemm(true, false, CRS, PQ, p.K, 1.f, w, CRS, dyn, PQ, 0.f, dxn, PQ);
      continue;
    }
    float* col = thread_workspace(0, CRS * PQ);    // (CRS, P*Q)
    sgemm(true, false, CRS, PQ, p.K, 1.f, w, CRS, dyn, PQ, 0.f, col, PQ);
    col2im(col, dxn, p);
  }
}

void conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W, KCRS = p.K * CRS;
  const bool pointwise = is_pointwise(p);
  const int nt = static_cast<int>(std::min<int64_t>(omp_threads(), std::max<int64_t>(p.N, 1)));
  // Each thread sums its contiguous share of the batch into its own (K, CRS) partial; the
  // partials are added in thread order, so a given thread count always gives the same bits.
  std::vector<float> partial(size_t(nt > 1 ? nt - 1 : 0) * KCRS);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_thread_id();
    float* acc = t == 0 ? dw : partial.data() + size_t(t - 1) * KCRS;   // (K, CRS)
    const int64_t n0 = p.N * t / nt, n1 = p.N * (t + 1) / nt;
    std::memset(acc, 0, sizeof(float) * KCRS);
    for (int64_t n = n0; n < n1; ++n) {
      const float* dyn = dy + n * p.K * PQ;        // (K, P*Q)
      const float* col = x + n * CHW;              // (CRS, P*Q)
      if (!pointwise) {
        float* buf = thread_workspace(0, CRS * PQ);
        im2col(x + n * CHW, buf, p);
        col = buf;
      }
      sgemm(false, true, p.K, CRS, PQ, 1.f, dyn, PQ, col, PQ, 1.f, acc, CRS);
    }
  }
  for (int t = 1; t < nt; ++t) {
    const float* part = partial.data() + size_t(t - 1) * KCRS;
    for (int64_t i = 0; i < KCRS; ++i) dw[i] += part[i];
  }
}

void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t PQ) {
#pragma omp parallel for schedule(static) if (K * N * PQ > (1 << 15))
  for (int64_t k = 0; k < K; ++k) {
    double s = 0.0;  // a double accumulator: PQ*N terms can be many
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + (n * K + k) * PQ;
      float t = 0.f;
      for (int64_t i = 0; i < PQ; ++i) t += row[i];
      s += t;
    }
    db[k] = static_cast<float>(s);
  }
}

}  // namespace cpu
}  // namespace fastconv
