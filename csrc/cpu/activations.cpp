// relu, tanh, sigmoid, leaky relu, elu and gelu on the CPU, forward and backward, over flat
// float arrays.
//
// Forward runs the vectorised kernels of vmath.h (AVX-512, AVX2+FMA or portable C++, from
// vmath.cpp's dispatch table): the activation is chosen once per call and each kernel is a straight
// vector loop, no per-element call. Large arrays are cut into fixed chunks spread over the
// OpenMP threads (the chunking does not depend on the thread count, so neither do the bits).
// Backward takes the forward OUTPUT y: relu' = (y > 0), tanh' = 1 - y^2, sigmoid' = y (1 - y);
// NaN propagates: relu's backward is dy where y > 0 or y is NaN and 0 where y <= 0, as PyTorch's
// threshold_backward (a NaN in dy reaches dx through every unit that was not switched off);
// those are one multiply-add a element, plain loops the compiler vectorises. Leaky ReLU and
// ELU also go from y (y > 0 exactly where x > 0, for alpha >= 0): dy where y > 0, else
// dy * alpha and dy * (y + alpha) (alpha e^x = y + alpha), with a NaN in y giving NaN. GELU's
// derivative is not a function of y, so its backward takes the forward INPUT x and runs the
// vectorised kernels of vmath.h (two exponentials an element).
// activation_backward_bias also sums dx per channel, for a conv layer's bias gradient, in the
// same pass (one read of dy instead of two).
//
// Outputs larger than half the last-level cache are written with non-temporal (streaming)
// stores: the result goes to a small per-thread buffer in L1 and from there straight to memory.
// Why: an ordinary store to a line not in cache first reads that line (read-for-ownership), so
// a memory-bound op moves 3 bytes for every 2 it needs, and the output evicts the input from
// the cache. ReLU forward on 64x32x28x28 (6.4 MB each way) gets clearly faster that way
// (benchmarks/bench.py), partly because the input then stays in the 8 MiB L3 between the
// benchmark's repeated calls; at batch 256 (26 MB, no such reuse) the gain is the 3 -> 2 bytes
// moved per output byte. The backward
// passes stream too (all three are one multiply-add an element); the tanh and sigmoid forward
// do not (see activation_forward). Outputs that fit the cache keep ordinary stores, so the
// next op finds them there.
#include <algorithm>
#include <vector>

#include "common/parallel.h"
#include "cpu/stream_store.h"
#include "cpu/vmath.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

static constexpr int64_t kChunk = 1 << 14;         // elements per work item
static constexpr int64_t kParallelMin = 1 << 15;   // below this, one thread

void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha) {
  const ActivationKernel f = activation_kernel(vec_math(), act, alpha);
  if (act == Activation::None && x == y) return;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  // tanh and sigmoid are compute-bound here (a division or exponential an element), so only
  // the memory-bound identity and ReLU stream; for tanh the extra pass through the L1 buffer
  // cost more than the store traffic it saved.
  const bool stream = x != y && (act == Activation::None || act == Activation::ReLU) &&
                      streams_output(n * int64_t(sizeof(float)));
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
    if (!stream) {
      f(x + i0, 0.f, y + i0, len);
      continue;
    }
    alignas(64) float buf[kStreamBlock];                    // stays in L1
    for (int64_t j = 0; j < len; j += kStreamBlock) {
      const int64_t m = std::min(kStreamBlock, len - j);
      f(x + i0 + j, 0.f, buf, m);
      stream_copy(buf, y + i0 + j, m);
    }
  }
  stream_fence();
}

namespace {
// dy * act'(y), written with the forward output y. The caller has loaded dy: `y > 0 ? dy[i] : 0`
// would read dy on one side only, which keeps GCC from turning the ReLU loop into a branch-free
// vector select (a mispredicted branch per element on random data, several times slower).
template <Activation A>
inline float act_grad(float g, float v) {
  if (A == Activation::ReLU) return v <= 0.f ? 0.f : g;   // y NaN: g (PyTorch's threshold_backward)
  if (A == Activation::Tanh) return g * (1.f - v * v);
  if (A == Activation::Sigmoid) return g * v * (1.f - v);
  return g;
}

template <Activation A>
void backward_all(const float* dy, const float* y, float* dx, int64_t n) {
  if (dx == dy || dx == y || !streams_output(n * int64_t(sizeof(float)))) {
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = act_grad<A>(dy[i], y[i]);
    return;
  }
  const int64_t blocks = (n + kStreamBlock - 1) / kStreamBlock;
#pragma omp parallel for schedule(static) num_threads(omp_threads())
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kStreamBlock, m = std::min(kStreamBlock, n - i0);
    alignas(64) float buf[kStreamBlock];                    // stays in L1
    for (int64_t i = 0; i < m; ++i) buf[i] = act_grad<A>(dy[i0 + i], y[i0 + i]);
    stream_copy(buf, dx + i0, m);
  }
  stream_fence();
}
}  // namespace

namespace {
// The backward of the activations with a parameter, from y (vmath.cpp's vectorised loops),
// over fixed chunks: thread-count independent.
void backward_param_all(Activation act, const float* dy, const float* y, float* dx, int64_t n,
                        float alpha) {
  const auto grad = act == Activation::LeakyReLU ? leaky_relu_backward_from_output : elu_backward_from_output;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
    grad(dy + i0, y + i0, dx + i0, len, alpha);
  }
}

// GELU from its input x: the vmath kernel over fixed chunks (thread-count independent bits).
void backward_gelu_all(VecGradFn grad, const float* dy, const float* x, float* dx, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
    grad(x + i0, dy + i0, dx + i0, len);
  }
}

VecGradFn gelu_grad_kernel(Activation act) {
  return act == Activation::GELU ? vec_math().gelu_backward : vec_math().gelu_tanh_backward;
}
}  // namespace

void activation_backward(Activation act, const float* dy, const float* y, float* dx, int64_t n,
                         float alpha, const float* x) {
  switch (act) {
    case Activation::LeakyReLU:
    case Activation::ELU: backward_param_all(act, dy, y, dx, n, alpha); return;
    case Activation::GELU:
    case Activation::GELUTanh: backward_gelu_all(gelu_grad_kernel(act), dy, x, dx, n); return;
    default: break;
  }
  switch (act) {
    case Activation::ReLU: backward_all<Activation::ReLU>(dy, y, dx, n); break;
    case Activation::Tanh: backward_all<Activation::Tanh>(dy, y, dx, n); break;
    case Activation::Sigmoid: backward_all<Activation::Sigmoid>(dy, y, dx, n); break;
    default: backward_all<Activation::None>(dy, y, dx, n); break;
  }
}

namespace {
// dx = dy * act'(y) over one plane of n elements; returns the plane's sum of dx, kept in 8
// partial sums (lane l takes elements l, l + 8, ...) so the loop vectorises without reordering
// anything the compiler is not told to.
template <Activation A>
float backward_plane(const float* dy, const float* y, float* dx, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float v = act_grad<A>(dy[i + l], y[i + l]);
      dx[i + l] = v;
      acc[l] += v;
    }
  for (; i < n; ++i) {
    const float v = act_grad<A>(dy[i], y[i]);
    dx[i] = v;
    acc[i % 8] += v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
}  // namespace

namespace {
// The sum of one plane of n elements in 8 partial sums, the order backward_plane uses.
float plane_total(const float* v, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += v[i + l];
  for (; i < n; ++i) acc[i % 8] += v[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
}  // namespace

void activation_backward_bias(Activation act, const float* dy, const float* y, float* dx,
                              float* db, int64_t N, int64_t K, int64_t PQ, float alpha,
                              const float* x) {
  std::vector<float> plane_sum(size_t(N * K));                  // (N, K)
  float (*plane)(const float*, const float*, float*, int64_t) =
      act == Activation::ReLU ? backward_plane<Activation::ReLU>
      : act == Activation::Tanh ? backward_plane<Activation::Tanh>
      : act == Activation::Sigmoid ? backward_plane<Activation::Sigmoid>
                                   : backward_plane<Activation::None>;
  // Leaky ReLU, ELU and GELU: each plane's dx first, then its sum in the same 8-lane order.
  const bool two_step = act >= Activation::LeakyReLU;
  const VecGradFn gelu_grad = activation_backward_needs_input(act) ? gelu_grad_kernel(act) : nullptr;
  const bool parallel = N * K * PQ > kParallelMin;
  // Two loops, not one with a branch: the one-pass loop's body stays one call (with PQ = 1,
  // a dense layer's 1x1 planes, the branch and the extra shared variables showed).
  if (!two_step) {
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel)
    for (int64_t i = 0; i < N * K; ++i)
      plane_sum[size_t(i)] = plane(dy + i * PQ, y + i * PQ, dx + i * PQ, PQ);
  } else {
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (parallel)
    for (int64_t i = 0; i < N * K; ++i) {
      const int64_t o = i * PQ;
      if (gelu_grad)
        gelu_grad(x + o, dy + o, dx + o, PQ);
      else if (act == Activation::LeakyReLU)
        leaky_relu_backward_from_output(dy + o, y + o, dx + o, PQ, alpha);
      else
        elu_backward_from_output(dy + o, y + o, dx + o, PQ, alpha);
      plane_sum[size_t(i)] = plane_total(dx + o, PQ);
    }
  }
  for (int64_t k = 0; k < K; ++k) {                              // in n order: thread-independent
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n) s += plane_sum[size_t(n * K + k)];
    db[k] = static_cast<float>(s);
  }
}

void bias_activation_forward(float* y, const float* b, int64_t N, int64_t C, int64_t inner,
                             Activation act, float alpha) {
  if (!b && act == Activation::None) return;
  const ActivationKernel f = activation_kernel(vec_math(), act, alpha);
  if (inner == 1) {                                // (N, C) rows: the bias is a row, not a shift
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      float* yn = y + n * C;                       // (C)
      if (b) for (int64_t c = 0; c < C; ++c) yn[c] += b[c];
      f(yn, 0.f, yn, C);
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (N * C * inner > kParallelMin)
  for (int64_t i = 0; i < N * C; ++i) f(y + i * inner, b ? b[i % C] : 0.f, y + i * inner, inner);
}

}  // namespace cpu
}  // namespace fastconv
