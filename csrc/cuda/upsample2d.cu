// 2-D upsampling by integer factors on the GPU: nearest and bilinear, forward and backward.
//
//   x, dx are (planes, H, W)     y, dy are (planes, Ho, Wo),  Ho = H * sh, Wo = W * sw
//
// Forward: one thread per output element. nearest reads x[h / sh][w / sw]; bilinear blends the
// four taps of upsample_source (ops.h, the same float arithmetic as the CPU and PyTorch).
// Backward, gather form: one thread per INPUT element (i, j) visits the outputs that read it
// and adds their share, in a fixed order; every dx element is written once, with no atomics
// and no zero-fill pass, so the result is deterministic. nearest: the sh x sw block above it.
// bilinear: the output rows h whose taps (i0, i1) include i lie in a short window (those
// with i0 in {i - 1, i}), found by upsample_rows_reading (a few rows either side of the
// inverse map), and likewise the columns; each (h, w) pair adds dy times the product of its
// row and column weights for i and j.
// Memory-bound: 8 bytes an output forward; the bilinear backward reads each dy about 4 times
// from L1/L2 (neighbouring threads share rows).
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {

// The weight with which output index o of one axis reads input index i (0 when it does not).
FC_HD float upsample_weight(int64_t o, int64_t i, int64_t in, int64_t out, bool align_corners) {
  const UpsampleTap t = upsample_source(o, in, out, align_corners);
  float w = 0.f;
  if (t.i0 == i) w += 1.f - t.l1;
  if (t.i1 == i) w += t.l1;
  return w;
}

// The outputs [lo, hi] of one axis that may read input index i: those o with i0(o) in
// {i - 1, i}. The inverse of the source map, widened by two either side for rounding.
FC_HD void upsample_rows_reading(int64_t i, int64_t in, int64_t out, bool align_corners,
                                 int64_t* lo, int64_t* hi) {
  double a, b;
  if (align_corners) {
    const double r = in > 1 ? double(out - 1) / double(in - 1) : 0.0;
    a = double(i - 1) * r;
    b = double(i + 1) * r;
  } else {
    const double r = double(out) / double(in);
    a = (double(i - 1) + 0.5) * r - 0.5;
    b = (double(i + 1) + 0.5) * r - 0.5;
  }
  int64_t l = int64_t(a) - 2, h = int64_t(b) + 2;
  if (in <= 1) { l = 0; h = out - 1; }
  *lo = l < 0 ? 0 : l;
  *hi = h > out - 1 ? out - 1 : h;
}

FC_HD float upsample_bilinear_forward_at(const float* x, int64_t H, int64_t W, int64_t Ho,
                                         int64_t Wo, bool ac, int64_t e) {
  const int64_t plane = e / (Ho * Wo), hw = e - plane * Ho * Wo, h = hw / Wo, w = hw - h * Wo;
  const UpsampleTap r = upsample_source(h, H, Ho, ac), c = upsample_source(w, W, Wo, ac);
  const float* xp = x + plane * H * W;
  const float top = (1.f - c.l1) * ldg(xp + r.i0 * W + c.i0) + c.l1 * ldg(xp + r.i0 * W + c.i1);
  const float bot = (1.f - c.l1) * ldg(xp + r.i1 * W + c.i0) + c.l1 * ldg(xp + r.i1 * W + c.i1);
  return (1.f - r.l1) * top + r.l1 * bot;
}

FC_HD float upsample_bilinear_backward_at(const float* dy, int64_t H, int64_t W, int64_t Ho,
                                          int64_t Wo, bool ac, int64_t e) {
  const int64_t plane = e / (H * W), ij = e - plane * H * W, i = ij / W, j = ij - i * W;
  int64_t h0, h1, w0, w1;
  upsample_rows_reading(i, H, Ho, ac, &h0, &h1);
  upsample_rows_reading(j, W, Wo, ac, &w0, &w1);
  const float* g = dy + plane * Ho * Wo;
  float acc = 0.f;
  for (int64_t h = h0; h <= h1; ++h) {
    const float a = upsample_weight(h, i, H, Ho, ac);
    if (a == 0.f) continue;
    float row = 0.f;
    for (int64_t w = w0; w <= w1; ++w) {
      const float b = upsample_weight(w, j, W, Wo, ac);
      if (b != 0.f) row += b * ldg(g + h * Wo + w);
    }
    acc += a * row;
  }
  return acc;
}

FC_HD float upsample_nearest_backward_at(const float* dy, int64_t H, int64_t W, int64_t sh,
                                         int64_t sw, int64_t e) {
  const int64_t plane = e / (H * W), ij = e - plane * H * W, i = ij / W, j = ij - i * W;
  const int64_t Wo = W * sw;
  const float* g = dy + plane * H * sh * Wo + (i * sh) * Wo + j * sw;
  float acc = 0.f;
  for (int64_t t = 0; t < sh; ++t)
    for (int64_t u = 0; u < sw; ++u) acc += ldg(g + t * Wo + u);
  return acc;
}

namespace {

constexpr int kUpsampleThreads = 256;

#define FC_UPSAMPLE_FOR(i, n)                                                            \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n);            \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void nearest_forward_kernel(const float* x, float* y, int64_t total, int64_t H,
                                       int64_t W, int64_t sh, int64_t sw) {
  const int64_t Ho = H * sh, Wo = W * sw;
  FC_UPSAMPLE_FOR(e, total) {
    const int64_t plane = e / (Ho * Wo), hw = e - plane * Ho * Wo, h = hw / Wo, w = hw - h * Wo;
    y[e] = ldg(x + plane * H * W + (h / sh) * W + w / sw);
  }
}

__global__ void nearest_backward_kernel(const float* dy, float* dx, int64_t total, int64_t H,
                                        int64_t W, int64_t sh, int64_t sw) {
  FC_UPSAMPLE_FOR(e, total) dx[e] = upsample_nearest_backward_at(dy, H, W, sh, sw, e);
}

__global__ void bilinear_forward_kernel(const float* x, float* y, int64_t total, int64_t H,
                                        int64_t W, int64_t Ho, int64_t Wo, bool ac) {
  FC_UPSAMPLE_FOR(e, total) y[e] = upsample_bilinear_forward_at(x, H, W, Ho, Wo, ac, e);
}

__global__ void bilinear_backward_kernel(const float* dy, float* dx, int64_t total, int64_t H,
                                         int64_t W, int64_t Ho, int64_t Wo, bool ac) {
  FC_UPSAMPLE_FOR(e, total) dx[e] = upsample_bilinear_backward_at(dy, H, W, Ho, Wo, ac, e);
}

}  // namespace

void upsample2d_nearest_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                int64_t sh, int64_t sw) {
  const int64_t total = planes * H * sh * W * sw;
  if (total <= 0) return;
  nearest_forward_kernel<<<grid_for(total, kUpsampleThreads), kUpsampleThreads, 0, stream()>>>(x, y, total, H, W, sh, sw);
  CUDA_CHECK_LAUNCH();
}

void upsample2d_nearest_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                 int64_t sh, int64_t sw) {
  const int64_t total = planes * H * W;
  if (total <= 0) return;
  nearest_backward_kernel<<<grid_for(total, kUpsampleThreads), kUpsampleThreads, 0, stream()>>>(dy, dx, total, H, W, sh, sw);
  CUDA_CHECK_LAUNCH();
}

void upsample2d_bilinear_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                 int64_t Ho, int64_t Wo, bool align_corners) {
  const int64_t total = planes * Ho * Wo;
  if (total <= 0) return;
  bilinear_forward_kernel<<<grid_for(total, kUpsampleThreads), kUpsampleThreads, 0, stream()>>>(
      x, y, total, H, W, Ho, Wo, align_corners);
  CUDA_CHECK_LAUNCH();
}

void upsample2d_bilinear_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                  int64_t Ho, int64_t Wo, bool align_corners) {
  const int64_t total = planes * H * W;
  if (total <= 0) return;
  bilinear_backward_kernel<<<grid_for(total, kUpsampleThreads), kUpsampleThreads, 0, stream()>>>(
      dy, dx, total, H, W, Ho, Wo, align_corners);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
