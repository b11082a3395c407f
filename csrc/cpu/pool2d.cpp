// Max and average pooling on the CPU, one (n, c) plane per OpenMP work item.
//
//   x is (N, C, H, W) -> y is (N, C, P, Q); window kh x kw at (p*sh - pt, q*sw - pl).
//
// Each window is clipped to the real cells [h0, h1) x [w0, w1) first, so padding is never read:
// max pooling never picks a padded cell, and average pooling divides either by kh*kw
// (count_include_pad, PyTorch's default) or by the number of real cells (Keras's "same").
// Max pooling's backward recomputes the window's first maximum (row-major order) from x, so
// forward and backward agree on ties without storing indices. The training pair
// (max_pool2d_forward_indices / max_pool2d_backward_indices, below) stores that choice instead,
// one byte an output, so the backward reads a byte rather than the window; the same bits.
//
// Fast path: windows that tile the input (stride == window, no padding; 2x2 stride 2 is the
// common one) are disjoint and never clipped, so each output row reads kh whole input rows
// and each backward writes every input cell exactly once (the cells past P*kh rows or Q*kw
// columns, which no window covers, get 0). The loops are written branch-free over the output
// columns, with the window size a compile-time constant for 2x2, so the compiler vectorises
// them. They give the same bits as the general path:
//   max     m = the window's maximum, NaN if any cell is NaN (first NaN wins in the reference)
//   argmax  the first cell with v == m, or v != v (a NaN): exactly the reference's first max
//   avg     the row-major sum divided by kh*kw
// The 2x2 training pair (with indices) also has an AVX2 version (avx2/pool2d_max2x2_avx2.cpp,
// the same bits); the dispatch table kMaxPool2x2Kernels below picks it by ISA (isa.h).
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/parallel.h"
#include "cpu/isa.h"
#include "cpu/pool2d_kernels.h"
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

// ---------------------------------------------------------------- disjoint windows, no padding
inline bool tiles_input(const Pool2dParams& p) {
  return p.stride_h == p.kh && p.stride_w == p.kw && p.pad_top == 0 && p.pad_left == 0 &&
         p.pad_bottom == 0 && p.pad_right == 0;
}
// The larger of m and v, where a NaN in either wins (written as a select so it vectorises).
inline float nan_max(float m, float v) { return (v > m || v != v) ? v : m; }
inline bool parallel_planes(const Pool2dParams& p) { return p.N * p.C * p.H * p.W > (1 << 15); }

// KH, KW: the window as compile-time constants, or 0 to read p.kh, p.kw at run time.
template <int KH, int KW>
void max_forward_tiled(const float* x, float* y, const Pool2dParams& p) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const float* xr = x + i * HW + op * kh * W;   // (kh, W): the window rows of output row op
      float* yr = y + i * PQ + op * Q;               // (Q)
      for (int64_t oq = 0; oq < Q; ++oq) {
        const float* cell = xr + oq * kw;
        float m = cell[0];
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t b = 0; b < kw; ++b) m = nan_max(m, cell[a * W + b]);
        yr[oq] = m;
      }
    }
}

// Is v the window's maximum m, or a NaN (then m is NaN too)? Bitwise, not short-circuit.
inline bool is_max(float v, float m) { return (v == m) | (v != v); }

void max_backward_tiled(const float* dy, const float* x, float* dx, const Pool2dParams& p) {
  const int64_t kh = p.kh, kw = p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i) {
    for (int64_t op = 0; op < p.P; ++op) {
      const float* xr = x + i * HW + op * kh * W;   // (kh, W)
      float* dxr = dx + i * HW + op * kh * W;       // (kh, W)
      const float* dyr = dy + i * PQ + op * Q;       // (Q)
      if (kh == 2 && kw == 2) {
        const float* x0 = xr;  const float* x1 = xr + W;
        float* d0 = dxr;       float* d1 = dxr + W;
        for (int64_t oq = 0; oq < Q; ++oq) {
          const float a = x0[2 * oq], b = x0[2 * oq + 1], c = x1[2 * oq], d = x1[2 * oq + 1];
          const float m = nan_max(nan_max(nan_max(a, b), c), d);
          const bool ha = is_max(a, m), hb = is_max(b, m), hc = is_max(c, m);
          const float g = dyr[oq];
          d0[2 * oq] = ha ? g : 0.f;
          d0[2 * oq + 1] = (hb & !ha) ? g : 0.f;
          d1[2 * oq] = (hc & !(ha | hb)) ? g : 0.f;
          d1[2 * oq + 1] = !(ha | hb | hc) ? g : 0.f;
        }
      } else {
        for (int64_t oq = 0; oq < Q; ++oq) {
          const float* cell = xr + oq * kw;
          float* dcell = dxr + oq * kw;
          float m = cell[0];
          for (int64_t a = 0; a < kh; ++a)
            for (int64_t b = 0; b < kw; ++b) m = nan_max(m, cell[a * W + b]);
          const float g = dyr[oq];
          bool taken = false;                        // has an earlier cell got g?
          for (int64_t a = 0; a < kh; ++a)
            for (int64_t b = 0; b < kw; ++b) {
              const bool hit = !taken & is_max(cell[a * W + b], m);
              dcell[a * W + b] = hit ? g : 0.f;
              taken |= hit;
            }
        }
      }
      for (int64_t a = 0; a < kh; ++a)              // columns past Q*kw: no window
        for (int64_t w = Q * kw; w < W; ++w) dxr[a * W + w] = 0.f;
    }
    std::memset(dx + i * HW + p.P * kh * W, 0, sizeof(float) * (p.H - p.P * kh) * W);  // rows past P*kh
  }
}

template <int KH, int KW>
void avg_forward_tiled(const float* x, float* y, const Pool2dParams& p) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  const float d = float(kh * kw);
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const float* xr = x + i * HW + op * kh * W;
      float* yr = y + i * PQ + op * Q;
      for (int64_t oq = 0; oq < Q; ++oq) {
        const float* cell = xr + oq * kw;
        float s = 0.f;
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t b = 0; b < kw; ++b) s += cell[a * W + b];
        yr[oq] = s / d;
      }
    }
}

template <int KH, int KW>
void avg_backward_tiled(const float* dy, float* dx, const Pool2dParams& p) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
  const float d = float(kh * kw);
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i) {
    for (int64_t op = 0; op < p.P; ++op) {
      float* dxr = dx + i * HW + op * kh * W;
      const float* dyr = dy + i * PQ + op * Q;
      for (int64_t oq = 0; oq < Q; ++oq) {
        const float g = dyr[oq] / d;
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t b = 0; b < kw; ++b) dxr[a * W + oq * kw + b] = g;
      }
      for (int64_t a = 0; a < kh; ++a)
        for (int64_t w = Q * kw; w < W; ++w) dxr[a * W + w] = 0.f;
    }
    std::memset(dx + i * HW + p.P * kh * W, 0, sizeof(float) * (p.H - p.P * kh) * W);
  }
}

inline bool is_2x2(const Pool2dParams& p) { return p.kh == 2 && p.kw == 2; }
}  // namespace

void max_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  if (tiles_input(p)) {
    if (is_2x2(p)) max_forward_tiled<2, 2>(x, y, p); else max_forward_tiled<0, 0>(x, y, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
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
  if (tiles_input(p)) {
    max_backward_tiled(dy, x, dx, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
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

// ---------------------------------------------------------------- max pooling with indices
// The training path. The forward also records where each output's maximum lies in its window,
// one byte per output: a * kw + b for the window's cell (a, b), counted from the window's
// unclipped corner (op*sh - pt, oq*sw - pl); kNoCell where the window has no real cell. The
// backward then places dy from those bytes instead of reading x again: it reads 1 byte per
// output instead of the kh*kw floats of its window. Same choice of cell as the functions
// above (the first maximum, a NaN winning), so the same dx bit for bit.
namespace {
template <int KH, int KW>
void max_forward_indices_tiled(const float* x, float* y, uint8_t* idx, const Pool2dParams& p) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const float* xr = x + i * HW + op * kh * W;   // (kh, W): the window rows of output row op
      float* yr = y + i * PQ + op * Q;               // (Q)
      uint8_t* ir = idx + i * PQ + op * Q;           // (Q)
      if (kh == 2 && kw == 2) {                      // the common case, written to vectorise
        const float* x0 = xr;  const float* x1 = xr + W;
        for (int64_t oq = 0; oq < Q; ++oq) {
          const float a = x0[2 * oq], b = x0[2 * oq + 1], c = x1[2 * oq], d = x1[2 * oq + 1];
          const float m = nan_max(nan_max(nan_max(a, b), c), d);
          const int na = !is_max(a, m), nb = na & !is_max(b, m), nc = nb & !is_max(c, m);
          yr[oq] = m;
          ir[oq] = uint8_t(na + nb + nc);            // 0, 1, 2 or 3: the first cell holding m
        }
        continue;
      }
      for (int64_t oq = 0; oq < Q; ++oq) {
        const float* cell = xr + oq * kw;
        float m = cell[0];
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t b = 0; b < kw; ++b) m = nan_max(m, cell[a * W + b]);
        int j = 0;                                   // the first cell holding m: scan backwards
        for (int64_t a = kh - 1; a >= 0; --a)
          for (int64_t b = kw - 1; b >= 0; --b)
            j = is_max(cell[a * W + b], m) ? int(a * kw + b) : j;
        yr[oq] = m;
        ir[oq] = uint8_t(j);
      }
    }
}

template <int KH, int KW>
void max_backward_indices_tiled(const float* dy, const uint8_t* idx, float* dx, const Pool2dParams& p) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, W = p.W, Q = p.Q;
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel_planes(p))
  for (int64_t i = 0; i < planes; ++i) {
    for (int64_t op = 0; op < p.P; ++op) {
      float* dxr = dx + i * HW + op * kh * W;       // (kh, W)
      const float* dyr = dy + i * PQ + op * Q;       // (Q)
      const uint8_t* ir = idx + i * PQ + op * Q;     // (Q)
      if (kh == 2 && kw == 2) {                      // the common case, written to vectorise
        float* d0 = dxr;  float* d1 = dxr + W;
        for (int64_t oq = 0; oq < Q; ++oq) {
          const float g = dyr[oq];
          const int j = ir[oq];
          d0[2 * oq] = j == 0 ? g : 0.f;
          d0[2 * oq + 1] = j == 1 ? g : 0.f;
          d1[2 * oq] = j == 2 ? g : 0.f;
          d1[2 * oq + 1] = j == 3 ? g : 0.f;
        }
      } else {
        for (int64_t oq = 0; oq < Q; ++oq) {
          const float g = dyr[oq];
          const int64_t j = ir[oq];
          for (int64_t a = 0; a < kh; ++a)
            for (int64_t b = 0; b < kw; ++b) dxr[a * W + oq * kw + b] = a * kw + b == j ? g : 0.f;
        }
      }
      for (int64_t a = 0; a < kh; ++a)              // columns past Q*kw: no window
        for (int64_t w = Q * kw; w < W; ++w) dxr[a * W + w] = 0.f;
    }
    std::memset(dx + i * HW + p.P * kh * W, 0, sizeof(float) * (p.H - p.P * kh) * W);  // rows past P*kh
  }
}
// The dispatch table of the 2x2 stride-2 training pair, in priority order (isa.h): the AVX2
// kernels (which the avx512 level uses too), then the plain loops above with the window fixed.
//                        needs         forward_indices                       backward_indices
const MaxPool2x2Kernels kMaxPool2x2Kernels[] = {
#ifdef FASTCONV_X86
    {Isa::Avx2, max_pool2d_2x2_forward_indices_avx2, max_pool2d_2x2_backward_indices_avx2},
#endif
    {Isa::Generic, max_forward_indices_tiled<2, 2>, max_backward_indices_tiled<2, 2>},
};

const MaxPool2x2Kernels& max_pool2x2_kernels() {
  static const MaxPool2x2Kernels& chosen = first_runnable(kMaxPool2x2Kernels);  // once
  return chosen;
}

}  // namespace

void max_pool2d_forward_indices(const float* x, float* y, uint8_t* idx, const Pool2dParams& p) {
  if (tiles_input(p)) {
    if (is_2x2(p)) max_pool2x2_kernels().forward_indices(x, y, idx, p);
    else max_forward_indices_tiled<0, 0>(x, y, idx, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    const float* xp = x + i * HW;
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const int64_t a = window_argmax(xp, p, window(p, op, oq));
        const int64_t o = i * PQ + op * p.Q + oq;
        y[o] = a < 0 ? 0.f : xp[a];
        idx[o] = a < 0 ? kNoCell
                       : uint8_t((a / p.W - (op * p.stride_h - p.pad_top)) * p.kw +
                                 (a % p.W - (oq * p.stride_w - p.pad_left)));
      }
  }
}

int64_t max_pool2d_find_bad_index(const uint8_t* idx, const Pool2dParams& p) {
  const int64_t cells = p.kh * p.kw, n = p.N * p.C * p.P * p.Q;
  // 1. Every index names a cell of the kh x kw window, or is kNoCell: one branch-free maximum
  // of idx + 1 in bytes, where kNoCell (255) wraps to 0 (the compiler vectorises it); the
  // position is looked for only when one is out of range.
  static_assert(kNoCell == 255, "the wrap-around below relies on it");
  uint8_t largest_plus_one = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t v = uint8_t(idx[i] + 1);
    largest_plus_one = v > largest_plus_one ? v : largest_plus_one;
  }
  if (largest_plus_one > cells)
    for (int64_t i = 0; i < n; ++i)
      if (idx[i] >= cells && idx[i] != kNoCell) return i;
  // 2. Without padding every window lies inside the image: nothing more to check (the fast
  // path of training: 2x2 stride 2). With padding, only the windows that reach into it, the
  // output rows and columns at the border, can name a cell outside the image.
  if (p.pad_top == 0 && p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0) return -1;
  const auto clipped = [](int64_t start, int64_t k, int64_t size) { return start < 0 || start + k > size; };
  std::vector<int64_t> edge_columns;                             // oq whose window is clipped
  for (int64_t oq = 0; oq < p.Q; ++oq)
    if (clipped(oq * p.stride_w - p.pad_left, p.kw, p.W)) edge_columns.push_back(oq);
  const int64_t PQ = p.P * p.Q;
  for (int64_t i = 0; i < p.N * p.C; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const int64_t hs = op * p.stride_h - p.pad_top;
      const bool edge_row = clipped(hs, p.kh, p.H);
      const int64_t count = edge_row ? p.Q : int64_t(edge_columns.size());
      for (int64_t c = 0; c < count; ++c) {
        const int64_t oq = edge_row ? c : edge_columns[size_t(c)];
        const int64_t o = i * PQ + op * p.Q + oq;
        if (idx[o] == kNoCell) continue;
        const int64_t h = hs + idx[o] / p.kw, w = oq * p.stride_w - p.pad_left + idx[o] % p.kw;
        if (h < 0 || h >= p.H || w < 0 || w >= p.W) return o;
      }
    }
  return -1;
}

void max_pool2d_backward_indices(const float* dy, const uint8_t* idx, float* dx, const Pool2dParams& p) {
  if (tiles_input(p)) {
    if (is_2x2(p)) max_pool2x2_kernels().backward_indices(dy, idx, dx, p);
    else max_backward_indices_tiled<0, 0>(dy, idx, dx, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
  for (int64_t i = 0; i < planes; ++i) {
    float* dxp = dx + i * HW;
    std::memset(dxp, 0, sizeof(float) * HW);
    for (int64_t op = 0; op < p.P; ++op)
      for (int64_t oq = 0; oq < p.Q; ++oq) {
        const int64_t o = i * PQ + op * p.Q + oq;
        if (idx[o] == kNoCell) continue;
        const int64_t h = op * p.stride_h - p.pad_top + idx[o] / p.kw;
        const int64_t w = oq * p.stride_w - p.pad_left + idx[o] % p.kw;
        // The binding refuses such an index (max_pool2d_find_bad_index); a caller from C++ that
        // skipped that check still gets no write outside dx.
        if (h < 0 || h >= p.H || w < 0 || w >= p.W || idx[o] >= p.kh * p.kw) continue;
        dxp[h * p.W + w] += dy[o];
      }
  }
}

void avg_pool2d_forward(const float* x, float* y, const Pool2dParams& p) {
  if (tiles_input(p)) {
    if (is_2x2(p)) avg_forward_tiled<2, 2>(x, y, p); else avg_forward_tiled<0, 0>(x, y, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
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
  if (tiles_input(p)) {
    if (is_2x2(p)) avg_backward_tiled<2, 2>(dy, dx, p); else avg_backward_tiled<0, 0>(dy, dx, p);
    return;
  }
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * PQ > 4096)
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
