// Elementwise activations on the GPU: relu, tanh, sigmoid, leaky relu, elu, gelu (erf and tanh
// forms), forward and backward.
//
// x, y, dy, dx are flat arrays of n float32 (any shape). One thread per element with a grid
// stride; in-place (y == x, dx == dy) is allowed since each element is read then written by
// the same thread. The backward takes the FORWARD OUTPUT y, except GELU's, which takes x:
//   relu    dx = dy * (y > 0)      tanh    dx = dy * (1 - y^2)      sigmoid dx = dy * y(1 - y)
//   leaky   dx = dy * (y > 0 ? 1 : alpha)          elu  dx = dy * (y > 0 ? 1 : y + alpha)
//   gelu    dx = dy * (Phi(x) + x phi(x))          (common.cuh: activation_grad)
// NaN propagates (common.cuh: apply_activation, activation_grad): relu(NaN) = NaN, and relu's
// backward passes dy where y is NaN, as PyTorch does.
// Memory-bound: 8 bytes per element forward, 12 backward; at ~3 TB/s a 10^7-element relu
// takes ~27 us, so the kernel is a plain coalesced stream and nothing more.
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__global__ void activation_forward_kernel(int act, const float* x, float* y, int64_t n,
                                          float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = apply_activation(act, x[i], alpha);
}

// y or x may be null when the activation does not read it (activation_backward_needs_input).
__global__ void activation_backward_kernel(int act, const float* dy, const float* y,
                                           const float* x, float* dx, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = activation_grad(act, dy[i], y ? y[i] : 0.f, x ? x[i] : 0.f, alpha);
}

// y (N, C, inner) = act(y + b[c]) in place.
__global__ void bias_activation_kernel(float* y, const float* b, int64_t total, int64_t C,
                                       int64_t inner, int act, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = y[i] + (b ? ldg(b + (i / inner) % C) : 0.f);
    y[i] = apply_activation(act, v, alpha);
  }
}

}  // namespace

void bias_activation_forward(float* y, const float* b, int64_t N, int64_t C, int64_t inner,
                             Activation act, float alpha) {
  const int64_t total = N * C * inner;
  if (total <= 0 || (!b && act == Activation::None)) return;
  bias_activation_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
      y, b, total, C, inner, int(act), alpha);
  CUDA_CHECK_LAUNCH();
}

void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha) {
  if (n <= 0) return;
  activation_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(int(act), x, y, n,
                                                                               alpha);
  CUDA_CHECK_LAUNCH();
}

void activation_backward(Activation act, const float* dy, const float* y, float* dx, int64_t n,
                         float alpha, const float* x) {
  if (n <= 0) return;
  activation_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      int(act), dy, y, x, dx, n, alpha);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
