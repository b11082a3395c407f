// The generic tensor ops the layers share on the GPU: add, accumulate, scale, channel copies
// (concatenation along axis 1 and its backward), zero padding and cropping, softmax's backward
// and the RMSprop step.
//
// All but softmax_backward are one thread per output element with a grid stride, each output
// written once (no atomics): memory-bound streams. The index decodes of the channel copy and
// of pad/crop are __host__ __device__ (tests/cuda_host_emulation.cu runs them on a CPU).
//   copy_channels  src (N, Cs, inner) channels [s0, s0 + count) -> dst (N, Cd, inner) [d0, ...)
//   zero_pad2d     x (planes, H, W) -> y (planes, H + t + b, W + l + r), zeros outside
//   crop2d         x (planes, H + t + b, W + l + r) -> y (planes, H, W)
//   batched_transpose  x (N, A, B) -> y (N, B, A): NCHW <-> NHWC (A = C, B = H*W, or back), for
//                  the Keras layers that order an image's values channels-last (Flatten, Reshape)
//   softmax_backward  one warp per row of (rows, cols): dx = y (dy - sum(dy y))
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {

// Element e of the copied block (N, count, inner) -> (source index, destination index).
FC_HD void channel_copy_index(int64_t e, int64_t count, int64_t inner, int64_t Cs, int64_t s0,
                              int64_t Cd, int64_t d0, int64_t* src, int64_t* dst) {
  const int64_t per_n = count * inner;
  const int64_t n = e / per_n, r = e - n * per_n, c = r / inner, j = r - c * inner;
  *src = (n * Cs + s0 + c) * inner + j;
  *dst = (n * Cd + d0 + c) * inner + j;
}

// Output element e of zero_pad2d: the input element it copies, or -1 for the zero border.
FC_HD int64_t zero_pad_source(int64_t e, int64_t H, int64_t W, int64_t top, int64_t bottom,
                              int64_t left, int64_t right) {
  const int64_t Hp = H + top + bottom, Wp = W + left + right;
  const int64_t plane = e / (Hp * Wp), hw = e - plane * Hp * Wp, h = hw / Wp, w = hw - h * Wp;
  const int64_t i = h - top, j = w - left;
  if (i < 0 || i >= H || j < 0 || j >= W) return -1;
  return (plane * H + i) * W + j;
}

// Output element e of crop2d (planes, H, W): the element of the padded input it copies.
FC_HD int64_t crop_source(int64_t e, int64_t H, int64_t W, int64_t top, int64_t bottom,
                          int64_t left, int64_t right) {
  const int64_t Hp = H + top + bottom, Wp = W + left + right;
  const int64_t plane = e / (H * W), hw = e - plane * H * W, i = hw / W, j = hw - i * W;
  return (plane * Hp + i + top) * Wp + j + left;
}

// Output element e of batched_transpose, y (N, B, A): the element of x (N, A, B) it copies.
FC_HD int64_t batched_transpose_source(int64_t e, int64_t A, int64_t B) {
  const int64_t n = e / (A * B), r = e - n * A * B, b = r / A, a = r - b * A;
  return (n * A + a) * B + b;
}

namespace {

constexpr int kOpThreads = 256;

#define FC_OPS_FOR(i, n)                                                              \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n);          \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  FC_OPS_FOR(i, n) out[i] = a[i] + b[i];
}
__global__ void add_inplace_kernel(float* out, const float* a, int64_t n) {
  FC_OPS_FOR(i, n) out[i] += a[i];
}
__global__ void scale_kernel(const float* a, float s, float* out, int64_t n) {
  FC_OPS_FOR(i, n) out[i] = s * a[i];
}
__global__ void copy_channels_kernel(const float* src, int64_t Cs, int64_t s0, float* dst,
                                     int64_t Cd, int64_t d0, int64_t count, int64_t inner,
                                     int64_t total) {
  FC_OPS_FOR(e, total) {
    int64_t si, di;
    channel_copy_index(e, count, inner, Cs, s0, Cd, d0, &si, &di);
    dst[di] = ldg(src + si);
  }
}
__global__ void zero_pad_kernel(const float* x, float* y, int64_t total, int64_t H, int64_t W,
                                int64_t t, int64_t b, int64_t l, int64_t r) {
  FC_OPS_FOR(e, total) {
    const int64_t s = zero_pad_source(e, H, W, t, b, l, r);
    y[e] = s < 0 ? 0.f : ldg(x + s);
  }
}
__global__ void crop_kernel(const float* x, float* y, int64_t total, int64_t H, int64_t W,
                            int64_t t, int64_t b, int64_t l, int64_t r) {
  FC_OPS_FOR(e, total) y[e] = ldg(x + crop_source(e, H, W, t, b, l, r));
}
// One warp per row.
__global__ void batched_transpose_kernel(const float* x, float* y, int64_t total, int64_t A,
                                         int64_t B) {
  FC_OPS_FOR(e, total) y[e] = x[batched_transpose_source(e, A, B)];
}

__global__ void softmax_backward_kernel(const float* dy, const float* y, float* dx, int64_t rows,
                                        int64_t cols) {
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t row = blockIdx.x * int64_t(warps) + (threadIdx.x >> 5); row < rows;
       row += int64_t(gridDim.x) * warps) {
    const float* g = dy + row * cols;
    const float* v = y + row * cols;
    float dot = 0.f;
    for (int64_t j = lane; j < cols; j += 32) dot += g[j] * v[j];
    dot = warp_sum(dot);
    for (int64_t j = lane; j < cols; j += 32) dx[row * cols + j] = v[j] * (g[j] - dot);
  }
}
// fastconv/optimizers.py's RMSprop, float32, in this order.
__global__ void rmsprop_kernel(float* p, const float* g, float* ms, int64_t n, float lr, float rho,
                               float eps) {
  FC_OPS_FOR(i, n) {
    const float gi = g[i];
    const float m = __fadd_rn(__fmul_rn(rho, ms[i]), __fmul_rn(__fsub_rn(1.f, rho), __fmul_rn(gi, gi)));
    ms[i] = m;
    p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(lr, gi), __fadd_rn(__fsqrt_rn(m), eps)));
  }
}

}  // namespace

void add(const float* a, const float* b, float* out, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, kOpThreads), kOpThreads, 0, stream()>>>(a, b, out, n);
  CUDA_CHECK_LAUNCH();
}

void add_inplace(float* out, const float* a, int64_t n) {
  if (n <= 0) return;
  add_inplace_kernel<<<grid_for(n, kOpThreads), kOpThreads, 0, stream()>>>(out, a, n);
  CUDA_CHECK_LAUNCH();
}

void scale(const float* a, float s, float* out, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, kOpThreads), kOpThreads, 0, stream()>>>(a, s, out, n);
  CUDA_CHECK_LAUNCH();
}

void copy_channels(const float* src, int64_t Cs, int64_t s0, float* dst, int64_t Cd, int64_t d0,
                   int64_t count, int64_t N, int64_t inner) {
  const int64_t total = N * count * inner;
  if (total <= 0) return;
  copy_channels_kernel<<<grid_for(total, kOpThreads), kOpThreads, 0, stream()>>>(
      src, Cs, s0, dst, Cd, d0, count, inner, total);
  CUDA_CHECK_LAUNCH();
}

void zero_pad2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t top,
                int64_t bottom, int64_t left, int64_t right) {
  const int64_t total = planes * (H + top + bottom) * (W + left + right);
  if (total <= 0) return;
  zero_pad_kernel<<<grid_for(total, kOpThreads), kOpThreads, 0, stream()>>>(
      x, y, total, H, W, top, bottom, left, right);
  CUDA_CHECK_LAUNCH();
}

void crop2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t top,
            int64_t bottom, int64_t left, int64_t right) {
  const int64_t total = planes * H * W;
  if (total <= 0) return;
  crop_kernel<<<grid_for(total, kOpThreads), kOpThreads, 0, stream()>>>(x, y, total, H, W, top,
                                                                        bottom, left, right);
  CUDA_CHECK_LAUNCH();
}

void batched_transpose(const float* x, float* y, int64_t N, int64_t A, int64_t B) {
  const int64_t total = N * A * B;
  if (total <= 0) return;
  batched_transpose_kernel<<<grid_for(total, kOpThreads), kOpThreads, 0, stream()>>>(x, y, total, A,
                                                                                    B);
  CUDA_CHECK_LAUNCH();
}

void softmax_backward(const float* dy, const float* y, float* dx, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  softmax_backward_kernel<<<grid_for(rows, kOpThreads / 32), kOpThreads, 0, stream()>>>(
      dy, y, dx, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void rmsprop_update(float* p, const float* g, float* ms, int64_t n, float lr, float rho, float eps) {
  if (n <= 0) return;
  rmsprop_kernel<<<grid_for(n, kOpThreads), kOpThreads, 0, stream()>>>(p, g, ms, n, lr, rho, eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
