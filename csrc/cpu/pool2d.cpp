// Max and average pooling on the CPU, one (n, c) plane per OpenMP work item.
//
//   x is (N, C, H, W) -> y is (N, C, P, Q); window kh x kw at (p*sh - pt, q*sw - pl).
//
// Each window is clipped to the real cells [h0, h1) x [w0, w1) first, so padding is never read:
// max pooling never picks a padded cell, and average pooling divides either by kh*kw
// (count_include_pad, PyTorch's default) or by the number of real cells (Keras's "same").
// Max pooling's backward recomputes the window's first maximum (row-major order) from x, so
// forward and backward agree on ties without storing indices.
#include <algorithm>
#include <cstring>
#include <limits>

#include "ops.h"

namespace fastconv {
namespace cpu {

namespace {
struct Window { int64_t h0, h1, w0, w1; };
inline Window window(const Pool2dParams& p, int64_t op, int64_t oq) {
  const int64_t hs = op * p.stride_h - p.pad_top, ws = oq * p.stride_w - p.pad_left;
  return {std::max<int64_t>(hs, 0), std::min<int64_t>(hs + p.kh, p.H),
          std::max<int64_t>(ws, 0), std::min<int64_t>(ws + p.kw, p.W)};
}
// Index (h*W + w) of the first maximum in the window, or -1 for a window without real cells.
inline int64_t window_argmax(const float* xp, const Pool2dParams& p, const Window& win) {
  int64_t best = -1;
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t h = win.h0; h < win.h1; ++h)
    for (int64_t w = win.w0; w < win.w1; ++w) {
      const float v = xp[h * p.W + w];
      if (best < 0 || v > m || (v != v && m == m)) { m = v; best = h * p.W + w; }  // NaN wins
    }
  return best;
}
inline float avg_divisor(const Pool2dParams& p, const Window& win) {
  return p.count_include_pad ? float(p.kh * p.kw) : float((win.h1 - win.h0) * (win.w1 - win.w0));
}
}  // namespace

void max_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    const float* xp = x + i * HW;   // (H, W)
    float* yp = y + i * PQ;         // (P, Q)
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const Window win = window(p, op, oq);
        const int64_t a = window_argmax(xp, p, win);
        yp[op * p.Q + oq] = a < 0 ? 0.f : xp[a];
      }
  }
}

void max_pool2d_backward(const float* dy, const float* x, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    const float* xp = x + i * HW;
    const float* dyp = dy + i * PQ;
    float* dxp = dx + i * HW;
    std::memset(dxp, 0, sizeof(float) * HW);
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const int64_t a = window_argmax(xp, p, window(p, op, oq));
        if (a >= 0) dxp[a] += dyp[op * p.Q + oq];
      }
  }
}

void avg_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    const float* xp = x + i * HW;
    float* yp = y + i * PQ;
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const Window win = window(p, op, oq);
        float s = 0.f;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) s += xp[h * p.W + w];
        const float d = avg_divisor(p, win);
        yp[op * p.Q + oq] = d > 0 ? s / d : 0.f;
      }
  }
}

void avg_pool2d_backward(const float* dy, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    const float* dyp = dy + i * PQ;
    float* dxp = dx + i * HW;
    std::memset(dxp, 0, sizeof(float) * HW);
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const Window win = window(p, op, oq);
        const float d = avg_divisor(p, win);
        if (d <= 0) continue;
        const float g = dyp[op * p.Q + oq] / d;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) dxp[h * p.W + w] += g;
      }
  }
}

}  // namespace cpu
}  // namespace fastconv
