// The optimisers' update steps on the CPU: one pass over a flat parameter buffer.
//
//   p, g, velocity, m, v, ms, mg, buf are (n) float32 arrays; fastconv/optimizers.py passes the
//   model's flat weight and gradient buffers, so one call updates every layer.
//
// Why in C++: the same steps as NumPy array expressions take 10 to 12 passes over the buffers
// (870,634 floats for the small VGG, each pass memory-bound) and a Python call each.
//
// The arithmetic is the float32 arithmetic of the NumPy expressions they replace, operation
// by operation and in the same order (each product and sum rounded to float32; no fused
// multiply-add: CMakeLists.txt compiles this file with -ffp-contract=off, which matters where
// the baseline ISA has FMA, as aarch64's does), so a training run gives the same bits as
// before and as the CUDA kernels (csrc/cuda/training.cu), and every element is independent,
// so the thread count changes nothing.
#include <cmath>

#include "common/parallel.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

// SGD:  g' = g + wd * p (wd != 0);  step = lr * g'
//       no momentum: p -= step
//       momentum:    v = momentum * v - step;  p += v   (Nesterov: p = (p - step) + momentum * v)
void sgd_update(float* p, const float* g, float* velocity, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov) {
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (weight_decay != 0.f) gi = p[i] * weight_decay + gi;
    const float step = gi * lr;
    if (!velocity) {
      p[i] = p[i] - step;
      continue;
    }
    const float vi = velocity[i] * momentum - step;
    velocity[i] = vi;
    p[i] = nesterov ? (p[i] - step) + vi * momentum : p[i] + vi;
  }
}

// Adam (Keras's form; AdamW's decoupled decay when decay != 1):
//   p *= decay;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= alpha m / (sqrt(v) + eps)
// with alpha = lr sqrt(1 - b2^t) / (1 - b1^t) for step t, c1 = 1 - b1 and c2 = 1 - b2, all
// computed by the caller in double and rounded once to float32 (1.f - b1 in float32 is not
// the same number).
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float alpha, float b1,
                 float c1, float b2, float c2, float eps, float decay) {
  // A lower threshold than SGD's: the square root and division make Adam compute-bound, so
  // even LeNet-5's 61,706 parameters split over 2 threads take half the time.
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    if (decay != 1.f) pi = pi * decay;
    const float gi = g[i];
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + (gi * gi) * c2;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - (mi / (std::sqrt(vi) + eps)) * alpha;
  }
}

// RMSprop (Keras's arguments; epsilon after the root, as the CUDA rmsprop_update):
//   p *= decay (decoupled weight decay when decay != 1)
//   ms = rho ms + c g^2                      c = 1 - rho, rounded once to float32 by the caller
//   centered (mg not null): mg = rho mg + c g;  den = sqrt(max(ms - mg^2, 0)) + eps
//   else:                                        den = sqrt(ms) + eps
//   step = (g lr) / den;  momentum (buf not null): buf = momentum buf + step;  p -= buf
//                         else:                    p -= step
// The max(., 0) guards the centered variance against rounding below zero (ms >= mg^2 holds
// exactly, not always after rounding), which would make the root NaN.
void rmsprop_update(float* p, const float* g, float* ms, float* mg, float* buf, int64_t n,
                    float lr, float rho, float c, float momentum, float eps, float decay) {
  // Compute-bound like Adam's step (a root and a division per element): Adam's threshold.
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    if (decay != 1.f) pi = pi * decay;
    const float gi = g[i];
    const float msi = ms[i] * rho + (gi * gi) * c;
    ms[i] = msi;
    float den;
    if (mg) {
      const float mgi = mg[i] * rho + gi * c;
      mg[i] = mgi;
      const float var = msi - mgi * mgi;
      den = std::sqrt(var > 0.f ? var : 0.f) + eps;
    } else {
      den = std::sqrt(msi) + eps;
    }
    const float step = (gi * lr) / den;
    if (buf) {
      const float bi = buf[i] * momentum + step;
      buf[i] = bi;
      p[i] = pi - bi;
    } else {
      p[i] = pi - step;
    }
  }
}

}  // namespace cpu
}  // namespace fastconv
