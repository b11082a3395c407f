// The kernels that keep a whole training step on the GPU: batch gathering, the loss with its
// running sums, dropout, the optimisers, and the step counter.
//
// A step that never waits for the host can be recorded once as a CUDA graph and replayed
// (runtime.h). Everything that changes from step to step therefore lives in device memory, not
// in kernel arguments: the int64 `counters` array holds
//   counters[0]  the batch cursor: which slice of the epoch's permutation the next batch is,
//   counters[1]  the optimiser step t (Adam's bias correction, dropout's random stream),
// and step_end() advances both as the step's last kernel. The host resets the cursor once per
// epoch and reads the loss sums when the progress bar needs them.
//
// Shapes: x_all (S, sample) float32 and y_all (S) int64 are the whole training set on the GPU;
// perm (S) int64 the epoch's order; xb (m, sample), yb (m) one batch; logits/dlogits (N, C);
// p, g, and the optimiser state are the model's flat parameter buffers (n).
#include <cstdint>

#include "common/counter_rng.h"
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// xb[i, :] = x_all[perm[cursor * batch_stride + i], :], yb[i] likewise, for i < m.
// The cursor and perm live on the GPU, where the host cannot check them before the launch: a
// position past perm's end or an index outside [0, S) reads nothing and yields a zero sample
// with label -1, which the loss kernel counts as a bad label (fit then raises ValueError).
__global__ void gather_batch_kernel(const float* __restrict__ x_all, const int64_t* __restrict__ y_all,
                                    const int64_t* __restrict__ perm, const int64_t* counters,
                                    int64_t batch_stride, float* __restrict__ xb,
                                    int64_t* __restrict__ yb, int64_t m, int64_t sample,
                                    int64_t S) {
  const int64_t base = counters[0] * batch_stride;
  const int64_t total = m * sample;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / sample, j = e - i * sample;
    const int64_t at = base + i;
    const int64_t src = at >= 0 && at < S ? perm[at] : -1;
    const bool ok = src >= 0 && src < S;
    xb[e] = ok ? x_all[src * sample + j] : 0.f;
    if (j == 0) yb[i] = ok ? y_all[src] : -1;
  }
}

__device__ __forceinline__ int64_t warp_min(int64_t v) {
  for (int off = 16; off > 0; off >>= 1) {
    const int64_t o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  return v;
}

// One warp per row: dlogits = (softmax(z) - onehot(y)) / N; sums[0] += row loss,
// sums[1] += (argmax(z) == y) (the first maximum, as NumPy's argmax), sums[2] += bad labels.
__global__ void softmax_xent_sums_kernel(const float* __restrict__ logits,
                                         const int64_t* __restrict__ labels,
                                         float* __restrict__ dlogits, double* sums, int64_t N,
                                         int64_t C) {
  const int lane = threadIdx.x & 31;
  const float inv_n = 1.f / float(N);
  const int rows_per_block = blockDim.x >> 5;
  for (int64_t row = blockIdx.x * int64_t(rows_per_block) + (threadIdx.x >> 5); row < N;
       row += int64_t(gridDim.x) * rows_per_block) {
    const float* zr = logits + row * C;
    float* dr = dlogits + row * C;
    const int64_t label = labels[row];
    const bool ok = label >= 0 && label < C;
    float m = -INFINITY;
    for (int64_t j = lane; j < C; j += 32) m = fmaxf(m, zr[j]);
    m = warp_max(m);
    int64_t first = C;
    float s = 0.f;
    for (int64_t j = lane; j < C; j += 32) {
      const float z = zr[j];
      if (z == m && j < first) first = j;
      s += expf(z - m);
    }
    s = warp_sum(s);
    first = warp_min(first);
    const float inv = 1.f / s;
    for (int64_t j = lane; j < C; j += 32)
      dr[j] = (expf(zr[j] - m) * inv - (ok && j == label ? 1.f : 0.f)) * inv_n;
    if (lane == 0) {
      if (ok) {
        atomicAdd(&sums[0], double(logf(s) + m - zr[label]));
        if (first == label) atomicAdd(&sums[1], 1.0);
      } else {
        atomicAdd(&sums[2], 1.0);
      }
    }
  }
}

// mask[i] = (u >= rate) / (1 - rate); y = x * mask, with u = uniform01(seed, step, i)
// (common/counter_rng.h: the numbers cpu/dropout.cpp draws for the same seed and step).
__global__ void dropout_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       float* __restrict__ mask, int64_t n, float rate,
                                       float scale, uint64_t seed, const int64_t* counters) {
  const uint64_t step = uint64_t(counters[1]);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float k = uniform01(seed, step, uint64_t(i)) >= rate ? scale : 0.f;
    mask[i] = k;
    y[i] = x[i] * k;
  }
}

__global__ void multiply_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] * b[i];
}

// The same arithmetic, in the same order, as fastconv/optimizers.py (NumPy float32), so CPU
// and GPU training follow the same curve to rounding.
__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g,
                           float* __restrict__ v, int64_t n, float lr, float momentum, float wd,
                           bool nesterov) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float gi = g[i];
    if (wd != 0.f) gi = __fadd_rn(__fmul_rn(p[i], wd), gi);
    const float step = __fmul_rn(gi, lr);
    if (!v) {
      p[i] = __fsub_rn(p[i], step);
      continue;
    }
    const float vi = __fsub_rn(__fmul_rn(v[i], momentum), step);
    v[i] = vi;
    if (nesterov)
      p[i] = __fadd_rn(__fsub_rn(p[i], step), __fmul_rn(vi, momentum));
    else
      p[i] = __fadd_rn(p[i], vi);
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, double lr,
                            double beta1, double beta2, float eps, float decay,
                            const int64_t* counters) {
  const double t = double(counters[1] + 1);
  const float alpha = float(lr * sqrt(1.0 - pow(beta2, t)) / (1.0 - pow(beta1, t)));
  const float b1 = float(beta1), b2 = float(beta2);
  const float c1 = float(1.0 - beta1), c2 = float(1.0 - beta2);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = p[i];
    if (decay != 1.f) pi = __fmul_rn(pi, decay);
    const float gi = g[i];
    const float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gi, c1));
    const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(gi, gi), c2));
    m[i] = mi;
    v[i] = vi;
    p[i] = __fsub_rn(pi, __fmul_rn(__fdiv_rn(mi, __fadd_rn(__fsqrt_rn(vi), eps)), alpha));
  }
}

__global__ void step_end_kernel(int64_t* counters) {
  counters[0] += 1;
  counters[1] += 1;
}

}  // namespace

void gather_batch(const float* x_all, const int64_t* y_all, const int64_t* perm,
                  const int64_t* counters, int64_t batch_stride, float* xb, int64_t* yb,
                  int64_t m, int64_t sample, int64_t S) {
  if (m <= 0) return;
  gather_batch_kernel<<<grid_for(m * sample, kThreads), kThreads, 0, stream()>>>(
      x_all, y_all, perm, counters, batch_stride, xb, yb, m, sample, S);
  CUDA_CHECK_LAUNCH();
}

void softmax_xent_sums(const float* logits, const int64_t* labels, float* dlogits, double* sums,
                       int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  softmax_xent_sums_kernel<<<grid_for(N, kThreads / 32), kThreads, 0, stream()>>>(
      logits, labels, dlogits, sums, N, C);
  CUDA_CHECK_LAUNCH();
}

void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed,
                     const int64_t* counters) {
  if (n <= 0) return;
  dropout_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      x, y, mask, n, rate, 1.f / (1.f - rate), seed, counters);
  CUDA_CHECK_LAUNCH();
}

void multiply(const float* a, const float* b, float* y, int64_t n) {
  if (n <= 0) return;
  multiply_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(a, b, y, n);
  CUDA_CHECK_LAUNCH();
}

void sgd_update(float* p, const float* g, float* velocity, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov) {
  if (n <= 0) return;
  sgd_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(p, g, velocity, n, lr, momentum,
                                                               weight_decay, nesterov);
  CUDA_CHECK_LAUNCH();
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, double lr,
                 double beta1, double beta2, float eps, double weight_decay,
                 const int64_t* counters) {
  if (n <= 0) return;
  const float decay = float(1.0 - lr * weight_decay);
  adam_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(p, g, m, v, n, lr, beta1, beta2,
                                                                eps, decay, counters);
  CUDA_CHECK_LAUNCH();
}

void step_end(int64_t* counters) {
  step_end_kernel<<<1, 1, 0, stream()>>>(counters);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
