// Max and average pooling on the GPU, forward and backward, without atomics.
//
// Shapes: x, dx are (N, C, H, W); y, dy are (N, C, P, Q); window kh x kw.
//   window of (p, q): rows h = p*stride_h - pad_top + i (i < kh), cols w = q*stride_w -
//   pad_left + j (j < kw); cells outside [0, H) x [0, W) are padding.
//
// Forward: one thread per output element (grid-stride), a loop over its window.
//   max: the FIRST maximum in row-major window order among the real cells (a padded cell is
//        never picked); the CPU backend uses the same rule, so both route gradients alike.
//   avg: the sum of the real cells divided by kh*kw (count_include_pad) or by the number of
//        real cells. (With padding at most half the window, every window lies inside the
//        padded image, so kh*kw is also what PyTorch divides by.)
// Backward, gather form: one thread per INPUT element (n, c, h, w) visits the outputs whose
// window contains it, p in [ceil((h + pad_top - kh + 1) / stride_h), (h + pad_top) / stride_h]
// and likewise q, and adds their share. Max pooling recomputes each window's argmax from x
// (as the CPU does) and adds dy(p, q) only when the argmax is this cell. Every dx element is
// written exactly once: no atomics, no zero-fill pass, deterministic.
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct PoolGeom {
  int64_t H, W, P, Q;
  int kh, kw, sh, sw, pt, pl;
};

PoolGeom make_geom(const Pool2dParams& p) {
  return PoolGeom{p.H, p.W, p.P, p.Q, int(p.kh), int(p.kw), int(p.stride_h), int(p.stride_w),
                  int(p.pad_top), int(p.pad_left)};
}

// Row-major index (i*kw + j) of the first maximum of window (p, q) of one (H, W) plane, or -1
// when the window holds no real cell. The value is written to *best.
FC_HD int window_argmax(const float* plane, const PoolGeom& g, int64_t p,
                                             int64_t q, float* best) {
  const int64_t h0 = p * g.sh - g.pt, w0 = q * g.sw - g.pl;
  int arg = -1;
  float m = 0.f;
  for (int i = 0; i < g.kh; ++i) {
    const int64_t h = h0 + i;
    if (h < 0 || h >= g.H) continue;
    for (int j = 0; j < g.kw; ++j) {
      const int64_t w = w0 + j;
      if (w < 0 || w >= g.W) continue;
      const float v = ldg(plane + h * g.W + w);
      if (arg < 0 || v > m) {  // strictly greater: the first maximum wins
        m = v;
        arg = i * g.kw + j;
      }
    }
  }
  *best = m;
  return arg;
}

// Range of outputs along one axis whose windows contain input index x (inclusive bounds).
FC_HD void covering(int64_t x, int pad, int k, int s, int64_t out,
                                         int64_t* lo, int64_t* hi) {
  const int64_t xp = x + pad;  // position in padded coordinates
  int64_t a = xp - k + 1;      // first window start that still reaches x
  a = a <= 0 ? 0 : (a + s - 1) / s;
  int64_t b = xp / s;          // last window start not past x
  if (b > out - 1) b = out - 1;
  *lo = a;
  *hi = b;
}

// Number of real cells of window (p, q), or kh*kw with count_include_pad.
FC_HD float window_divisor(const PoolGeom& g, int64_t p, int64_t q,
                                                bool include_pad) {
  if (include_pad) return float(g.kh * g.kw);
  const int64_t h0 = p * g.sh - g.pt, w0 = q * g.sw - g.pl;
  const int64_t h_lo = h0 < 0 ? 0 : h0, h_hi = h0 + g.kh < g.H ? h0 + g.kh : g.H;
  const int64_t w_lo = w0 < 0 ? 0 : w0, w_hi = w0 + g.kw < g.W ? w0 + g.kw : g.W;
  const int64_t cells = (h_hi - h_lo) * (w_hi - w_lo);
  return cells > 0 ? float(cells) : 1.f;
}

// One element each (flat index i into y for the forwards, into dx for the backwards). These
// are the kernels' loop bodies, shared with the host emulation.
// x (planes, H, W) -> y (planes, P, Q)
FC_HD float max_pool_forward_at(const float* x, const PoolGeom& g, int64_t i) {
  const int64_t plane = i / (g.P * g.Q), pq = i - plane * g.P * g.Q;
  const int64_t p = pq / g.Q, q = pq - p * g.Q;
  float m;
  window_argmax(x + plane * g.H * g.W, g, p, q, &m);
  return m;
}

// dx (planes, H, W) from dy (planes, P, Q) and x (planes, H, W).
FC_HD float max_pool_backward_at(const float* dy, const float* x, const PoolGeom& g, int64_t i) {
  const int64_t plane = i / (g.H * g.W), hw = i - plane * g.H * g.W;
  const int64_t h = hw / g.W, w = hw - h * g.W;
  const float* xp = x + plane * g.H * g.W;
  const float* dyp = dy + plane * g.P * g.Q;
  int64_t p0, p1, q0, q1;
  covering(h, g.pt, g.kh, g.sh, g.P, &p0, &p1);
  covering(w, g.pl, g.kw, g.sw, g.Q, &q0, &q1);
  float s = 0.f;
  for (int64_t p = p0; p <= p1; ++p) {
    for (int64_t q = q0; q <= q1; ++q) {
      float m;
      const int arg = window_argmax(xp, g, p, q, &m);
      if (arg < 0) continue;
      const int64_t ah = p * g.sh - g.pt + arg / g.kw, aw = q * g.sw - g.pl + arg % g.kw;
      if (ah == h && aw == w) s += ldg(dyp + p * g.Q + q);
    }
  }
  return s;
}

FC_HD float avg_pool_forward_at(const float* x, const PoolGeom& g, bool include_pad, int64_t i) {
  const int64_t plane = i / (g.P * g.Q), pq = i - plane * g.P * g.Q;
  const int64_t p = pq / g.Q, q = pq - p * g.Q;
  const float* xp = x + plane * g.H * g.W;
  const int64_t h0 = p * g.sh - g.pt, w0 = q * g.sw - g.pl;
  float s = 0.f;
  for (int a = 0; a < g.kh; ++a) {
    const int64_t h = h0 + a;
    if (h < 0 || h >= g.H) continue;
    for (int b = 0; b < g.kw; ++b) {
      const int64_t w = w0 + b;
      if (w >= 0 && w < g.W) s += ldg(xp + h * g.W + w);
    }
  }
  return s / window_divisor(g, p, q, include_pad);
}

FC_HD float avg_pool_backward_at(const float* dy, const PoolGeom& g, bool include_pad,
                                 int64_t i) {
  const int64_t plane = i / (g.H * g.W), hw = i - plane * g.H * g.W;
  const int64_t h = hw / g.W, w = hw - h * g.W;
  const float* dyp = dy + plane * g.P * g.Q;
  int64_t p0, p1, q0, q1;
  covering(h, g.pt, g.kh, g.sh, g.P, &p0, &p1);
  covering(w, g.pl, g.kw, g.sw, g.Q, &q0, &q1);
  float s = 0.f;
  for (int64_t p = p0; p <= p1; ++p)
    for (int64_t q = q0; q <= q1; ++q)
      s += ldg(dyp + p * g.Q + q) / window_divisor(g, p, q, include_pad);
  return s;
}

#define FC_GRID_STRIDE(i, total)                                                   \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (total); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void max_pool_forward_kernel(const float* x, float* y, int64_t planes, PoolGeom g) {
  FC_GRID_STRIDE(i, planes * g.P * g.Q) y[i] = max_pool_forward_at(x, g, i);
}

__global__ void max_pool_backward_kernel(const float* dy, const float* x, float* dx,
                                         int64_t planes, PoolGeom g) {
  FC_GRID_STRIDE(i, planes * g.H * g.W) dx[i] = max_pool_backward_at(dy, x, g, i);
}

__global__ void avg_pool_forward_kernel(const float* x, float* y, int64_t planes, PoolGeom g,
                                        bool include_pad) {
  FC_GRID_STRIDE(i, planes * g.P * g.Q) y[i] = avg_pool_forward_at(x, g, include_pad, i);
}

__global__ void avg_pool_backward_kernel(const float* dy, float* dx, int64_t planes, PoolGeom g,
                                         bool include_pad) {
  FC_GRID_STRIDE(i, planes * g.H * g.W) dx[i] = avg_pool_backward_at(dy, g, include_pad, i);
}

}  // namespace

void max_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, total = planes * p.P * p.Q;
  if (total <= 0) return;
  max_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(x, y, planes, make_geom(p));
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_backward(const float* dy, const float* x, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, total = planes * p.H * p.W;
  if (total <= 0) return;
  max_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dy, x, dx, planes,
                                                                    make_geom(p));
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, total = planes * p.P * p.Q;
  if (total <= 0) return;
  avg_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(x, y, planes, make_geom(p),
                                                                   p.count_include_pad);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_backward(const float* dy, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, total = planes * p.H * p.W;
  if (total <= 0) return;
  avg_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dy, dx, planes, make_geom(p),
                                                                    p.count_include_pad);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
