// Batch normalisation on the CPU: training forward (batch statistics, running-statistics
// update), inference forward, backward.
//
//   x, y, dy, dx are (N, C, inner): inner = H*W for images (BatchNorm2d), 1 for (N, F) features
//   gamma, beta, mean, inv_std, running_mean, running_var, dgamma, dbeta are (C)
//   M = N * inner values per channel
//
// Forward (training)  mean = sum x / M,  var = sum (x - mean)^2 / M  (two passes: no
//                     cancellation), inv_std = 1 / sqrt(var + eps),
//                     y = (x - mean) inv_std gamma + beta = x scale + shift per channel.
//                     running = momentum running + (1 - momentum) batch (Keras's convention;
//                     PyTorch's momentum is 1 - this one), the variance times M / (M - 1)
//                     first when unbiased (PyTorch) and as is when biased (Keras).
// Backward            xhat = (x - mean) inv_std, dbeta = sum dy, dgamma = sum dy xhat,
//                     dx = gamma inv_std (dy - (dbeta + xhat dgamma) / M)   (batch statistics)
//                     dx = gamma inv_std dy                                  (constants)
// Sums run in float64 over float partial sums of one plane each (in the (N, C) layout, float
// sums of one column's N rows), in a fixed order: the bits do not depend on the thread count.
//
// Two layouts of the loops: with inner > 1 one channel is N planes of `inner` contiguous
// values, so the work is split over channels; with inner == 1 a channel is a column of an
// (N, C) matrix, so the sums run row by row over all channels at once (vectorised across C)
// and the work is split over column blocks. The training forward and the backward (inner > 1)
// are one parallel region each: a work item computes its channels' sums and then their output
// from the same values while they are still in its core's cache, instead of a second region
// and a second pass from memory (which, on a loaded machine, also meant a second wait for
// both threads to be scheduled).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "cpu/batch_norm_kernels.h"
#include "cpu/isa.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;
constexpr int64_t kColumnBlock = 256;  // (N, C) layout: channels per work item

// ---- The per-plane loops, portable (batch_norm_kernels.h: 8 lanes, the same bits everywhere)
// Sum over one plane of n floats in 8 lanes, returned in float64.
double plane_sum_generic(const float* v, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += v[i + l];
  for (; i < n; ++i) acc[i % 8] += v[i];
  return double((acc[0] + acc[1]) + (acc[2] + acc[3])) + double((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sum of (v - m)^2 over one plane.
double plane_sq_dev_generic(const float* v, int64_t n, float m) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) { const float d = v[i + l] - m; acc[l] += d * d; }
  for (; i < n; ++i) { const float d = v[i] - m; acc[i % 8] += d * d; }
  return double((acc[0] + acc[1]) + (acc[2] + acc[3])) + double((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sums of dy and of dy (x - m) over one plane.
void plane_grad_sums_generic(const float* dy, const float* x, int64_t n, float m, double* s_dy,
                             double* s_dyx) {
  float a[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, b[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) { a[l] += dy[i + l]; b[l] += dy[i + l] * (x[i + l] - m); }
  for (; i < n; ++i) { a[i % 8] += dy[i]; b[i % 8] += dy[i] * (x[i] - m); }
  *s_dy += double((a[0] + a[1]) + (a[2] + a[3])) + double((a[4] + a[5]) + (a[6] + a[7]));
  *s_dyx += double((b[0] + b[1]) + (b[2] + b[3])) + double((b[4] + b[5]) + (b[6] + b[7]));
}

void plane_affine_generic(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * a + b;
}

void plane_grad_generic(const float* dy, const float* x, float* dx, int64_t n, float a, float bx,
                        float k) {
  for (int64_t j = 0; j < n; ++j) dx[j] = a * dy[j] + (bx * x[j] + k);
}

// The per-plane loops by ISA, in priority order (isa.h). At the baseline ISA GCC vectorises the
// portable sums across i rather than along the lanes (a shuffle per element), hence the AVX2 entry.
const BatchNormKernels kBatchNormKernels[] = {
#ifdef FASTCONV_X86
    {Isa::Avx2, plane_sum_avx2, plane_sq_dev_avx2, plane_grad_sums_avx2, plane_affine_avx2,
     plane_grad_avx2},
#endif
    {Isa::Generic, plane_sum_generic, plane_sq_dev_generic, plane_grad_sums_generic,
     plane_affine_generic, plane_grad_generic},
};

}  // namespace

const BatchNormKernels& batch_norm_kernels() {
  static const BatchNormKernels& chosen = first_runnable(kBatchNormKernels);  // thread-safe, once
  return chosen;
}

namespace {

// y = x scale[c] + shift[c].
void apply_affine(const float* x, float* y, const float* scale, const float* shift, int64_t N,
                  int64_t C, int64_t inner) {
  if (inner > 1) {
    const BatchNormKernels& k = batch_norm_kernels();
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C * inner > kParallelMin)
    for (int64_t i = 0; i < N * C; ++i) k.plane_affine(x + i * inner, y + i * inner, inner, scale[i % C], shift[i % C]);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + n * C;
    float* yr = y + n * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * scale[c] + shift[c];
  }
}

// The training forward's per-channel outputs from the batch mean m and biased variance v (in
// float64): mean[c], inv_std[c], the running statistics' update, and y's scale and shift.
struct Affine { float scale, shift; };
struct TrainingOutputs {
  const float *gamma, *beta;
  float *mean, *inv_std, *running_mean, *running_var;
  float eps, momentum;
  bool unbiased_running_var;
  int64_t M;   // values per channel
  Affine channel(int64_t c, double m, double v) const {
    const double is = 1.0 / std::sqrt(v + double(eps));
    mean[c] = float(m);
    inv_std[c] = float(is);
    const double g = gamma ? double(gamma[c]) : 1.0;
    if (running_mean) running_mean[c] = momentum * running_mean[c] + (1.f - momentum) * float(m);
    if (running_var) {
      const double batch_var = unbiased_running_var && M > 1 ? v * double(M) / double(M - 1) : v;
      running_var[c] = momentum * running_var[c] + (1.f - momentum) * float(batch_var);
    }
    return {float(is * g), float((beta ? double(beta[c]) : 0.0) - m * is * g)};
  }
};

}  // namespace

// One parallel region, a channel (or a block of columns) per work item: its statistics, then
// its y from the same values, which a moment ago passed through this core's cache.
void batch_norm_forward_training(const float* x, const float* gamma, const float* beta, float* y,
                                 float* mean, float* inv_std, float* running_mean,
                                 float* running_var, int64_t N, int64_t C, int64_t inner,
                                 float eps, float momentum, bool unbiased_running_var) {
  const TrainingOutputs out{gamma, beta, mean, inv_std, running_mean, running_var, eps, momentum,
                            unbiased_running_var, N * inner};
  const double M = double(N * inner);
  if (inner > 1) {
    // mean and biased variance in float64 over float sums of one plane each (two passes).
    const BatchNormKernels& k = batch_norm_kernels();
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C * inner > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) s += k.plane_sum(x + (n * C + c) * inner, inner);
      const double m = s / M;
      double q = 0.0;
      for (int64_t n = 0; n < N; ++n) q += k.plane_sq_dev(x + (n * C + c) * inner, inner, float(m));
      const Affine f = out.channel(c, m, q / M);
      for (int64_t n = 0; n < N; ++n)
        k.plane_affine(x + (n * C + c) * inner, y + (n * C + c) * inner, inner, f.scale, f.shift);
    }
    return;
  }
  // (N, C): column sums row by row in float (vectorised across the block's columns; N rows
  // of error, small next to the float64 of the planes above), divided in float64.
  const int64_t blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, cn = std::min(kColumnBlock, C - c0);
    float s[kColumnBlock], q[kColumnBlock], m[kColumnBlock], scale[kColumnBlock], shift[kColumnBlock];
    for (int64_t c = 0; c < cn; ++c) s[c] = 0.f, q[c] = 0.f;
    for (int64_t n = 0; n < N; ++n) {
      const float* row = x + n * C + c0;
      for (int64_t c = 0; c < cn; ++c) s[c] += row[c];
    }
    for (int64_t c = 0; c < cn; ++c) m[c] = float(double(s[c]) / M);
    for (int64_t n = 0; n < N; ++n) {
      const float* row = x + n * C + c0;
      for (int64_t c = 0; c < cn; ++c) { const float d = row[c] - m[c]; q[c] += d * d; }
    }
    for (int64_t c = 0; c < cn; ++c) {
      const Affine f = out.channel(c0 + c, double(s[c]) / M, double(q[c]) / M);
      scale[c] = f.scale;
      shift[c] = f.shift;
    }
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = x + n * C + c0;
      float* yr = y + n * C + c0;
      for (int64_t c = 0; c < cn; ++c) yr[c] = xr[c] * scale[c] + shift[c];
    }
  }
}

void batch_norm_forward_inference(const float* x, const float* gamma, const float* beta, float* y,
                                  const float* running_mean, const float* running_var, int64_t N,
                                  int64_t C, int64_t inner, float eps) {
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double is = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
    const double g = gamma ? double(gamma[c]) : 1.0;
    scale[size_t(c)] = float(is * g);
    shift[size_t(c)] = float((beta ? double(beta[c]) : 0.0) - double(running_mean[c]) * is * g);
  }
  apply_affine(x, y, scale.data(), shift.data(), N, C, inner);
}

namespace {

// The coefficients of dx = a dy + bx x + k for one channel, from the formula above with
// xhat = (x - mean) inv_std, and dgamma, dbeta (s_dy = sum dy, s_dyx = sum dy (x - mean)).
struct GradCoefficients { float a, bx, k; };
GradCoefficients grad_coefficients(double s_dy, double s_dyx, double mean, float inv_std,
                                   const float* gamma, int64_t c, double M, bool batch_stats,
                                   float* dgamma, float* dbeta) {
  const double is = inv_std, g = gamma ? double(gamma[c]) : 1.0;
  const double db = s_dy, dg = s_dyx * is;   // sum dy xhat
  if (dbeta) dbeta[c] = float(db);
  if (dgamma) dgamma[c] = float(dg);
  if (!batch_stats) return {float(g * is), 0.f, 0.f};
  // g is (dy - db/M - xhat dg/M) = g is dy - g is^2 dg/M x + g is (is dg mean - db)/M
  return {float(g * is), float(-g * is * is * dg / M), float(g * is * (is * dg * mean - db) / M)};
}

}  // namespace

void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N,
                         int64_t C, int64_t inner, bool batch_stats) {
  const double M = double(N * inner);
  if (inner > 1) {
    // One work item per channel: its sums over its N planes, then its dx from the same planes,
    // which a moment ago passed through this core's cache (N * inner * 8 bytes: 100 KB for the
    // DCGAN's (64, 32, 14, 14)), in one parallel region.
    const BatchNormKernels& k = batch_norm_kernels();
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C * inner > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      double s_dy = 0.0, s_dyx = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c) * inner;
        k.plane_grad_sums(dy + o, x + o, inner, mean[c], &s_dy, &s_dyx);
      }
      const GradCoefficients f =
          grad_coefficients(s_dy, s_dyx, mean[c], inv_std[c], gamma, c, M, batch_stats, dgamma, dbeta);
      if (!dx) continue;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c) * inner;
        k.plane_grad(dy + o, x + o, dx + o, inner, f.a, f.bx, f.k);
      }
    }
    return;
  }
  // (N, C): per channel sum dy and sum dy (x - mean), a block of columns per work item.
  std::vector<double> s_dy(static_cast<size_t>(C), 0.0), s_dyx(static_cast<size_t>(C), 0.0);
  const int64_t blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, cn = std::min(kColumnBlock, C - c0);
    float a[kColumnBlock], b[kColumnBlock];
    for (int64_t c = 0; c < cn; ++c) a[c] = 0.f, b[c] = 0.f;
    const float* m = mean + c0;
    for (int64_t n = 0; n < N; ++n) {
      const float* g = dy + n * C + c0;
      const float* xr = x + n * C + c0;
      for (int64_t c = 0; c < cn; ++c) { a[c] += g[c]; b[c] += g[c] * (xr[c] - m[c]); }
    }
    for (int64_t c = 0; c < cn; ++c) s_dy[size_t(c0 + c)] = a[c], s_dyx[size_t(c0 + c)] = b[c];
  }
  std::vector<float> a(static_cast<size_t>(C)), bx(static_cast<size_t>(C)), k(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const GradCoefficients f = grad_coefficients(s_dy[size_t(c)], s_dyx[size_t(c)], mean[c], inv_std[c],
                                                 gamma, c, M, batch_stats, dgamma, dbeta);
    a[size_t(c)] = f.a; bx[size_t(c)] = f.bx; k[size_t(c)] = f.k;
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C > kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* g = dy + n * C;
    const float* xr = x + n * C;
    float* out = dx + n * C;
    for (int64_t c = 0; c < C; ++c) out[c] = a[size_t(c)] * g[c] + (bx[size_t(c)] * xr[c] + k[size_t(c)]);
  }
}

}  // namespace cpu
}  // namespace fastconv
