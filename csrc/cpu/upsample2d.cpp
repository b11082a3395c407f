// 2-D upsampling by integer factors on the CPU: nearest and bilinear, forward and backward.
//
//   x, dx are (N, C, H, W)      y, dy are (N, C, Ho, Wo),  Ho = H * sh, Wo = W * sw
//
// nearest   y[h][w] = x[h / sh][w / sw]  (Keras's UpSampling2D, PyTorch's "nearest")
//           dx[i][j] = the sum of the sh x sw block of dy it was copied to.
// bilinear  each output row h reads input rows i0 <= i1 with weights (1 - l, l), and columns
//           likewise (upsample_source, ops.h):
//             align_corners=False  src = (h + 0.5) / s - 0.5, clamped at 0 (the half-pixel rule:
//                                  PyTorch's default, TensorFlow's half_pixel_centers=True)
//             align_corners=True   src = h (H - 1) / (Ho - 1)  (0 when Ho == 1)
//           i0 = floor(src), i1 = min(i0 + 1, H - 1), l = src - i0.
//
// Planes (n, c) are independent, so every kernel runs one plane per OpenMP work item and needs
// no synchronisation: the backward's scatter adds inside one plane only, in a fixed order, so
// the bits do not depend on the thread count.
//
// Bilinear forward is separable: each input row is first interpolated along w into a row of
// Wo (a gather of two columns per output, H rows of it), then every output row is one blend of
// two such rows, a vectorisable a0 * r0 + a1 * r1 over Wo. Its backward runs the same two steps
// transposed: rows of dy are blended into (H, Wo) accumulators, then each accumulator row is
// scattered to its W columns.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;  // below this many outputs, one thread

// The (i0, i1, weight of i1) of every output index of one axis.
struct AxisTaps {
  std::vector<int64_t> i0, i1;
  std::vector<float> l1, l0;
};

AxisTaps axis_taps(int64_t in, int64_t out, bool align_corners) {
  AxisTaps t;
  t.i0.resize(size_t(out)); t.i1.resize(size_t(out)); t.l1.resize(size_t(out)); t.l0.resize(size_t(out));
  for (int64_t o = 0; o < out; ++o) {
    const UpsampleTap tap = upsample_source(o, in, out, align_corners);
    t.i0[size_t(o)] = tap.i0; t.i1[size_t(o)] = tap.i1;
    t.l1[size_t(o)] = tap.l1; t.l0[size_t(o)] = 1.f - tap.l1;
  }
  return t;
}

}  // namespace

void upsample2d_nearest_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                int64_t sh, int64_t sw) {
  const int64_t Wo = W * sw, HWo = H * sh * Wo, HW = H * W;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HWo > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * HW;                 // (H, W)
    float* yp = y + pl * HWo;                      // (Ho, Wo)
    for (int64_t i = 0; i < H; ++i) {
      float* row = yp + i * sh * Wo;               // the first of the sh copies
      const float* xr = xp + i * W;
      if (sw == 2) {
        for (int64_t j = 0; j < W; ++j) row[2 * j] = row[2 * j + 1] = xr[j];
      } else {
        for (int64_t j = 0; j < W; ++j)
          for (int64_t u = 0; u < sw; ++u) row[j * sw + u] = xr[j];
      }
      for (int64_t t = 1; t < sh; ++t) std::memcpy(row + t * Wo, row, sizeof(float) * size_t(Wo));
    }
  }
}

void upsample2d_nearest_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                 int64_t sh, int64_t sw) {
  const int64_t Wo = W * sw, HWo = H * sh * Wo, HW = H * W;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HWo > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* dyp = dy + pl * HWo;              // (Ho, Wo)
    float* dxp = dx + pl * HW;                     // (H, W)
    float* acc = thread_workspace(0, Wo);          // the sh rows of one block row, summed
    for (int64_t i = 0; i < H; ++i) {
      const float* r = dyp + i * sh * Wo;
      for (int64_t w = 0; w < Wo; ++w) acc[w] = r[w];
      for (int64_t t = 1; t < sh; ++t)
        for (int64_t w = 0; w < Wo; ++w) acc[w] += r[t * Wo + w];
      float* out = dxp + i * W;
      if (sw == 2) {
        for (int64_t j = 0; j < W; ++j) out[j] = acc[2 * j] + acc[2 * j + 1];
      } else {
        for (int64_t j = 0; j < W; ++j) {
          float s = acc[j * sw];
          for (int64_t u = 1; u < sw; ++u) s += acc[j * sw + u];
          out[j] = s;
        }
      }
    }
  }
}

void upsample2d_bilinear_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                 int64_t Ho, int64_t Wo, bool align_corners) {
  const AxisTaps rows = axis_taps(H, Ho, align_corners), cols = axis_taps(W, Wo, align_corners);
  const int64_t HW = H * W, HWo = Ho * Wo;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HWo > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * HW;                 // (H, W)
    float* yp = y + pl * HWo;                      // (Ho, Wo)
    float* wide = thread_workspace(0, H * Wo);     // (H, Wo): x interpolated along w
    for (int64_t i = 0; i < H; ++i) {
      const float* xr = xp + i * W;
      float* wr = wide + i * Wo;
      for (int64_t w = 0; w < Wo; ++w)
        wr[w] = cols.l0[size_t(w)] * xr[cols.i0[size_t(w)]] + cols.l1[size_t(w)] * xr[cols.i1[size_t(w)]];
    }
    for (int64_t h = 0; h < Ho; ++h) {
      const float a0 = rows.l0[size_t(h)], a1 = rows.l1[size_t(h)];
      const float* r0 = wide + rows.i0[size_t(h)] * Wo;
      const float* r1 = wide + rows.i1[size_t(h)] * Wo;
      float* yr = yp + h * Wo;
      for (int64_t w = 0; w < Wo; ++w) yr[w] = a0 * r0[w] + a1 * r1[w];
    }
  }
}

void upsample2d_bilinear_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                  int64_t Ho, int64_t Wo, bool align_corners) {
  const AxisTaps rows = axis_taps(H, Ho, align_corners), cols = axis_taps(W, Wo, align_corners);
  const int64_t HW = H * W, HWo = Ho * Wo;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HWo > kParallelMin)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* dyp = dy + pl * HWo;              // (Ho, Wo)
    float* dxp = dx + pl * HW;                     // (H, W)
    float* wide = thread_workspace(0, H * Wo);     // (H, Wo): dy summed into input rows
    std::memset(wide, 0, sizeof(float) * size_t(H * Wo));
    for (int64_t h = 0; h < Ho; ++h) {
      const float a0 = rows.l0[size_t(h)], a1 = rows.l1[size_t(h)];
      float* r0 = wide + rows.i0[size_t(h)] * Wo;
      float* r1 = wide + rows.i1[size_t(h)] * Wo;
      const float* g = dyp + h * Wo;
      for (int64_t w = 0; w < Wo; ++w) r0[w] += a0 * g[w];
      for (int64_t w = 0; w < Wo; ++w) r1[w] += a1 * g[w];
    }
    std::memset(dxp, 0, sizeof(float) * size_t(HW));
    for (int64_t i = 0; i < H; ++i) {
      const float* wr = wide + i * Wo;
      float* out = dxp + i * W;
      for (int64_t w = 0; w < Wo; ++w) {
        out[cols.i0[size_t(w)]] += cols.l0[size_t(w)] * wr[w];
        out[cols.i1[size_t(w)]] += cols.l1[size_t(w)] * wr[w];
      }
    }
  }
}

}  // namespace cpu
}  // namespace fastconv
