// fastconv's C++ API: the ops both backends implement, with the same signatures.
//
// Layout everywhere: images NCHW, filters OIHW, float32, dense row-major, no strides.
// Pointers are raw and sizes are int64_t; all shape logic (padding words, output sizes,
// argument checks with their messages) lives above these functions, in the bindings and
// fastconv/functional.py. The CPU versions live in fastconv::cpu (csrc/cpu/), the CUDA
// versions, taking device pointers, in fastconv::cuda (csrc/cuda/).
#pragma once
#include <cstdint>

namespace fastconv {

// Activation fused into an op's output pass (conv2d forward, linear forward).
//   LeakyReLU  x > 0 ? x : alpha x             (alpha = negative_slope, >= 0; Keras's 0.2)
//   ELU        x > 0 ? x : alpha (e^x - 1)     (alpha >= 0; 1.0 by default)
//   GELU       x Phi(x), Phi the normal CDF     (the exact erf form)
//   GELUTanh   x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), = 0.5 x (1 + tanh(u))
// `alpha` travels with the code wherever an activation is applied (every signature below
// takes it after the code, defaulting to 0, which the other activations ignore). The
// backward of every activation but GELU is written with the forward OUTPUT y; GELU's needs
// the pre-activation input x (its derivative is not a function of y).
enum class Activation : int {
  None = 0, ReLU = 1, Tanh = 2, Sigmoid = 3, LeakyReLU = 4, ELU = 5, GELU = 6, GELUTanh = 7
};
constexpr int kActivationCount = 8;

// The parameter an activation takes when the caller gives none (Keras's defaults).
inline float default_activation_alpha(Activation a) {
  return a == Activation::LeakyReLU ? 0.2f : a == Activation::ELU ? 1.f : 0.f;
}
// Whether the activation's backward needs the forward INPUT x (not only the output y).
inline bool activation_backward_needs_input(Activation a) {
  return a == Activation::GELU || a == Activation::GELUTanh;
}

// One 2-D convolution: x (N, C, H, W) * w (K, C, R, S) -> y (N, K, P, Q).
// Padding is explicit per side: "same" may put one more pixel bottom/right than top/left.
struct Conv2dParams {
  int64_t N, C, H, W;         // input
  int64_t K, R, S;            // output channels, filter height, filter width
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t dil_h, dil_w;
  int64_t P, Q;               // output height, width
};

// One 2-D pooling: x (N, C, H, W) -> y (N, C, P, Q), window kh x kw.
struct Pool2dParams {
  int64_t N, C, H, W;
  int64_t kh, kw;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t P, Q;
  bool count_include_pad;     // average pooling only: divide by kh*kw, or by the real cells
};

// Shared by the CPU and CUDA code (tests/cuda_host_emulation.cu runs the device copy on a CPU).
#if defined(__CUDACC__)
#define FASTCONV_HD __host__ __device__ inline
#else
#define FASTCONV_HD inline
#endif

// Bilinear upsampling along one axis: output index o of `out` reads input indices i0 <= i1
// of `in` with weights (1 - l1, l1). align_corners=False is the half-pixel rule, src =
// (o + 0.5) in/out - 0.5 clamped at 0 (PyTorch's default; TensorFlow's half_pixel_centers);
// align_corners=True maps the corner pixels onto each other, src = o (in - 1) / (out - 1).
// Float arithmetic in PyTorch's order, so the weights agree with it to the bit.
struct UpsampleTap {
  int64_t i0, i1;
  float l1;
};
FASTCONV_HD UpsampleTap upsample_source(int64_t o, int64_t in, int64_t out, bool align_corners) {
  float src;
  if (align_corners) {
    src = out > 1 ? float(in - 1) / float(out - 1) * float(o) : 0.f;
  } else {
    src = float(in) / float(out) * (float(o) + 0.5f) - 0.5f;
    src = src < 0.f ? 0.f : src;
  }
  int64_t i0 = int64_t(src);
  i0 = i0 < in - 1 ? i0 : in - 1;
  const int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
  return UpsampleTap{i0, i1, src - float(i0)};
}

// Output size of one spatial dimension: floor((n + pads - d(k-1) - 1) / s) + 1.
inline int64_t conv_out_size(int64_t n, int64_t k, int64_t s, int64_t pad_before, int64_t pad_after,
                             int64_t d) {
  return (n + pad_before + pad_after - d * (k - 1) - 1) / s + 1;
}

// The CPU ops run on fastconv's process-wide thread count (set_num_threads below) and give
// correct results on however many threads OpenMP grants. An op whose workspace cannot be
// allocated throws std::bad_alloc on the calling thread (never from inside its parallel
// region, which would end the process): common/parallel.h.
namespace cpu {
// --- conv2d (csrc/cpu/conv2d.cpp) -------------------------------------------------------
// y (N,K,P,Q) = act(conv(x, w) + b); b (K) may be null.
void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, Activation act, float alpha = 0.f);
// dx (N,C,H,W) from dy (N,K,P,Q) and w (K,C,R,S). dx is overwritten.
void conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dParams& p);
// dw (K,C,R,S) from dy (N,K,P,Q) and x (N,C,H,W), summed over the batch. dw is overwritten.
void conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dParams& p);
// db (K) = sum of dy (N,K,P,Q) over N, P, Q. db is overwritten.
void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t PQ);
// Which kernel runs pass 0 (forward), 1 (backward input) or 2 (backward weight) of p on this
// CPU: "whole_image_gemm", "winograd", "direct_rows", "direct_channels" or "im2col_gemm".
const char* conv2d_algorithm(int pass, const Conv2dParams& p);

// --- pooling (csrc/cpu/pool2d.cpp) --------------------------------------------------------
void max_pool2d_forward(const float* x, float* y, const Pool2dParams& p);
// dx (N,C,H,W) gets each dy at the first maximum of its window (row-major order); overwritten.
void max_pool2d_backward(const float* dy, const float* x, float* dx, const Pool2dParams& p);
// The training pair: the forward also writes idx (N,C,P,Q), where each maximum lies in its
// window (a * kw + b, or kNoCell), and the backward places dy from idx alone. kh * kw <= 255.
constexpr uint8_t kNoCell = 255;
void max_pool2d_forward_indices(const float* x, float* y, uint8_t* idx, const Pool2dParams& p);
// idx must name, for each output, a real cell of its window (or be kNoCell): the indices
// max_pool2d_forward_indices wrote, or any that pass max_pool2d_find_bad_index. The tiled
// kernels (no padding, stride == window) write only inside each window whatever idx holds.
void max_pool2d_backward_indices(const float* dy, const uint8_t* idx, float* dx, const Pool2dParams& p);
// The flat position of the first index of idx (N, C, P, Q) that names no real cell of its
// window (one past kh*kw, or on the window's padding), or -1 when there is none.
int64_t max_pool2d_find_bad_index(const uint8_t* idx, const Pool2dParams& p);
void avg_pool2d_forward(const float* x, float* y, const Pool2dParams& p);
void avg_pool2d_backward(const float* dy, float* dx, const Pool2dParams& p);

// --- activations (csrc/cpu/activations.cpp), n elements, in-place allowed (y == x) ---------
void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha = 0.f);
// dx = dy * act'(x), written with the forward output y: relu y>0, tanh 1-y^2, sigmoid y(1-y),
// leaky relu y>0 ? 1 : alpha, elu y>0 ? 1 : y+alpha; GELU from the forward input x (which
// must then be given; y is not read). A NaN in y (or x) gives NaN in dx.
void activation_backward(Activation act, const float* dy, const float* y, float* dx, int64_t n,
                         float alpha = 0.f, const float* x = nullptr);
// The same for dy, y, dx (N, K, PQ), and db (K) = dx summed over N and PQ (a conv layer's bias
// gradient) in the same pass.
void activation_backward_bias(Activation act, const float* dy, const float* y, float* dx,
                              float* db, int64_t N, int64_t K, int64_t PQ, float alpha = 0.f,
                              const float* x = nullptr);

// y (N, C, inner) = act(y + b[c]) in place, b (C) may be null: a transposed convolution's (or
// any op's) bias and activation as one pass over its output.
void bias_activation_forward(float* y, const float* b, int64_t N, int64_t C, int64_t inner,
                             Activation act, float alpha = 0.f);

// --- upsampling (csrc/cpu/upsample2d.cpp): x (planes, H, W) -> y (planes, Ho, Wo) ----------
// nearest: Ho = H * sh, Wo = W * sw, y[h][w] = x[h / sh][w / sw]; backward sums each block.
void upsample2d_nearest_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                int64_t sh, int64_t sw);
void upsample2d_nearest_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                 int64_t sh, int64_t sw);
// bilinear, the taps of upsample_source along each axis. dx is overwritten.
void upsample2d_bilinear_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                 int64_t Ho, int64_t Wo, bool align_corners);
void upsample2d_bilinear_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                  int64_t Ho, int64_t Wo, bool align_corners);

// --- batch normalisation (csrc/cpu/batch_norm.cpp): x, y (N, C, inner), per channel c -------
// Training: mean, inv_std (C) of the batch (biased variance, over N and inner), y = (x - mean)
// inv_std gamma + beta; the running statistics (may be null) become momentum * running +
// (1 - momentum) * batch, the variance unbiased (x M / (M - 1), M = N * inner) if asked.
void batch_norm_forward_training(const float* x, const float* gamma, const float* beta, float* y,
                                 float* mean, float* inv_std, float* running_mean,
                                 float* running_var, int64_t N, int64_t C, int64_t inner,
                                 float eps, float momentum, bool unbiased_running_var);
// Inference: y = (x - running_mean) / sqrt(running_var + eps) gamma + beta.
void batch_norm_forward_inference(const float* x, const float* gamma, const float* beta, float* y,
                                  const float* running_mean, const float* running_var, int64_t N,
                                  int64_t C, int64_t inner, float eps);
// dx, dgamma, dbeta (each may be null) from dy, x and the forward's mean and inv_std. With
// batch_stats the statistics were the batch's (training); otherwise they were constants.
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N,
                         int64_t C, int64_t inner, bool batch_stats);

// --- binary cross-entropy (csrc/cpu/losses.cpp) ---------------------------------------------
// logits, targets, dlogits (N, inner), weights (N) per sample or null. Returns the mean over all
// N * inner elements of w_n (max(z, 0) - z t + log1p(e^-|z|)); dlogits = w_n (sigmoid(z) - t)
// / (N * inner).
double bce_with_logits(const float* logits, const float* targets, const float* weights,
                       float* dlogits, int64_t N, int64_t inner);

// --- softmax and loss (csrc/cpu/softmax.cpp) -----------------------------------------------
// Softmax over the last axis of a (rows, cols) matrix.
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
// Mean cross-entropy of softmax(logits) (N, C) against integer labels (N); writes
// dlogits (N, C) = (softmax - onehot) / N and returns the mean loss.
float softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits,
                            int64_t N, int64_t C);

// --- linear (csrc/cpu/linear.cpp): y (N,O) = act(x (N,I) w^T + b), w (O,I) -----------------
void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N,
                    int64_t I, int64_t O, Activation act, float alpha = 0.f);
// dx (N,I) = dy w; dw (O,I) = dy^T x; db (O) = sum dy. Any output pointer may be null.
void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, int64_t N, int64_t I, int64_t O);

// --- dropout (csrc/cpu/dropout.cpp), n elements -------------------------------------------
// mask = (u >= rate) / (1 - rate) with u = uniform01(seed, step, index) (common/counter_rng.h,
// the CUDA kernel's numbers); y = x * mask. rate in [0, 1).
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step);

// --- optimiser steps (csrc/cpu/optimizers.cpp), in place over n floats ---------------------
// velocity may be null (no momentum). The float32 arithmetic of fastconv/optimizers.py.
void sgd_update(float* p, const float* g, float* velocity, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float alpha, float b1,
                 float c1, float b2, float c2, float eps, float decay);
// mg may be null (not centered), buf may be null (no momentum); c = 1 - rho.
void rmsprop_update(float* p, const float* g, float* ms, float* mg, float* buf, int64_t n,
                    float lr, float rho, float c, float momentum, float eps, float decay);

// --- threads ------------------------------------------------------------------------------
// One process-wide count for every thread that calls the kernels (common/parallel.h).
int get_num_threads();
// Throws std::invalid_argument unless 1 <= n <= max_num_threads().
void set_num_threads(int n);
int max_num_threads();
}  // namespace cpu

// ================================================================ CUDA backend
// The same ops on an NVIDIA GPU (csrc/cuda/*.cu). Every pointer is a DEVICE pointer; every
// call is enqueued on the CUDA legacy default stream and returns without waiting, except
// softmax_cross_entropy, which copies its loss back. Errors (a CUDA error, an out-of-range
// label) are thrown as C++ exceptions. Plain C++: no CUDA header is needed to call these.
namespace cuda {
// --- conv2d (csrc/cuda/conv2d.cu): implicit GEMM, no im2col buffer ------------------------
void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, Activation act, float alpha = 0.f);
void conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dParams& p);
void conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dParams& p);
void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t PQ);

// --- pooling (csrc/cuda/pool2d.cu) ---------------------------------------------------------
void max_pool2d_forward(const float* x, float* y, const Pool2dParams& p);
void max_pool2d_backward(const float* dy, const float* x, float* dx, const Pool2dParams& p);
void avg_pool2d_forward(const float* x, float* y, const Pool2dParams& p);
void avg_pool2d_backward(const float* dy, float* dx, const Pool2dParams& p);

// --- activations (csrc/cuda/activations.cu), n elements, in-place allowed (y == x) ---------
void activation_forward(Activation act, const float* x, float* y, int64_t n, float alpha = 0.f);
void activation_backward(Activation act, const float* dy, const float* y, float* dx, int64_t n,
                         float alpha = 0.f, const float* x = nullptr);
void bias_activation_forward(float* y, const float* b, int64_t N, int64_t C, int64_t inner,
                             Activation act, float alpha = 0.f);

// --- upsampling, batch norm (csrc/cuda/upsample2d.cu, batch_norm.cu): as on the CPU ---------
// The backward kernels gather (one thread per input element, no atomics): deterministic.
void upsample2d_nearest_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                int64_t sh, int64_t sw);
void upsample2d_nearest_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                 int64_t sh, int64_t sw);
void upsample2d_bilinear_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                 int64_t Ho, int64_t Wo, bool align_corners);
void upsample2d_bilinear_backward(const float* dy, float* dx, int64_t planes, int64_t H, int64_t W,
                                  int64_t Ho, int64_t Wo, bool align_corners);
void batch_norm_forward_training(const float* x, const float* gamma, const float* beta, float* y,
                                 float* mean, float* inv_std, float* running_mean,
                                 float* running_var, int64_t N, int64_t C, int64_t inner,
                                 float eps, float momentum, bool unbiased_running_var);
void batch_norm_forward_inference(const float* x, const float* gamma, const float* beta, float* y,
                                  const float* running_mean, const float* running_var, int64_t N,
                                  int64_t C, int64_t inner, float eps);
void batch_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* inv_std, float* dx, float* dgamma, float* dbeta, int64_t N,
                         int64_t C, int64_t inner, bool batch_stats);

// --- losses (csrc/cuda/losses.cu) -----------------------------------------------------------
// As the CPU's; copies the loss back (a host sync).
double bce_with_logits(const float* logits, const float* targets, const float* weights,
                       float* dlogits, int64_t N, int64_t inner);
// The same without a host sync: sums (2) float64 on the device gets [+= the summed per-sample
// losses (each the weighted mean over its inner elements), += the elements where (z > 0) ==
// (t > 0.5)].
void bce_with_logits_sums(const float* logits, const float* targets, const float* weights,
                          float* dlogits, double* sums, int64_t N, int64_t inner);
// Mean squared error of y against t (N, inner): returns mean (y - t)^2, dy = 2 (y - t) / (N inner).
double mse(const float* y, const float* t, float* dy, int64_t N, int64_t inner);
// sums (1) float64 += the summed per-sample losses (mean over inner), no host sync.
void mse_sums(const float* y, const float* t, float* dy, double* sums, int64_t N, int64_t inner);

// --- generic tensor ops (csrc/cuda/tensor_ops.cu) -------------------------------------------
void add(const float* a, const float* b, float* out, int64_t n);          // out = a + b
void add_inplace(float* out, const float* a, int64_t n);                  // out += a
void scale(const float* a, float s, float* out, int64_t n);               // out = s a
// dst (N, Cd, inner) channels [d0, d0 + count) = src (N, Cs, inner) channels [s0, s0 + count):
// concatenation along axis 1 (one call per input) and its backward (a slice of channels).
void copy_channels(const float* src, int64_t Cs, int64_t s0, float* dst, int64_t Cd, int64_t d0,
                   int64_t count, int64_t N, int64_t inner);
// y (planes, H + top + bottom, W + left + right) = x (planes, H, W) with a zero border.
void zero_pad2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t top,
                int64_t bottom, int64_t left, int64_t right);
// Its backward: y (planes, H, W) = x (planes, H + top + bottom, W + left + right) cropped.
void crop2d(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t top,
            int64_t bottom, int64_t left, int64_t right);
// y (N, B, A) = x (N, A, B) transposed per batch item: NCHW -> NHWC with A = C, B = H*W, and
// NHWC -> NCHW with A = H*W, B = C.
void batched_transpose(const float* x, float* y, int64_t N, int64_t A, int64_t B);
// dx (rows, cols) = y (dy - sum(dy y)) along each row: softmax's backward from its output.
void softmax_backward(const float* dy, const float* y, float* dx, int64_t rows, int64_t cols);
// ms = rho ms + (1 - rho) g^2; p -= lr g / (sqrt(ms) + eps)  (fastconv/optimizers.py's RMSprop)
void rmsprop_update(float* p, const float* g, float* ms, int64_t n, float lr, float rho, float eps);

// --- softmax and loss (csrc/cuda/softmax.cu) -----------------------------------------------
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
// x, y (outer, len, inner): softmax along the middle axis.
void softmax_strided_forward(const float* x, float* y, int64_t outer, int64_t len, int64_t inner);
// labels (N) int64 on the device. Throws std::invalid_argument if a label is outside [0, C).
float softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits,
                            int64_t N, int64_t C);

// --- linear and GEMM (csrc/cuda/linear.cu) -------------------------------------------------
void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N,
                    int64_t I, int64_t O, Activation act, float alpha = 0.f);
void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, int64_t N, int64_t I, int64_t O);
// C (M, N) = op(A) (M, K) * op(B) (K, N), row-major, alpha = 1, beta = 0 (C overwritten).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
           int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc);

// --- a training step on the device (csrc/cuda/training.cu) ---------------------------------
// counters (2) int64 on the device: [batch cursor, optimiser step]; sums (3) float64.
// S samples in x_all, y_all and perm; out-of-range positions give label -1 (see training.cu).
void gather_batch(const float* x_all, const int64_t* y_all, const int64_t* perm,
                  const int64_t* counters, int64_t batch_stride, float* xb, int64_t* yb,
                  int64_t m, int64_t sample, int64_t S);
void softmax_xent_sums(const float* logits, const int64_t* labels, float* dlogits, double* sums,
                       int64_t N, int64_t C);
void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed,
                     const int64_t* counters);
void multiply(const float* a, const float* b, float* y, int64_t n);
void sgd_update(float* p, const float* g, float* velocity, int64_t n, float lr, float momentum,
                float weight_decay, bool nesterov);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, double lr,
                 double beta1, double beta2, float eps, double weight_decay,
                 const int64_t* counters);
void step_end(int64_t* counters);
}  // namespace cuda
}  // namespace fastconv
