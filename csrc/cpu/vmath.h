// Vectorised element-wise math for the CPU ops: exp, tanh, sigmoid, relu over float arrays.
//
// Every kernel computes  y[i] = f(x[i] + shift)  for i < n on the calling thread (in place is
// allowed, y == x). The shift is how callers fuse one add into the pass: conv2d's output pass
// adds a channel's bias before its activation, softmax computes exp(x - max) with shift = -max.
//
// One algorithm, three builds (the same constants in each, so the ISAs agree to rounding):
//   exp(x)      Cephes expf: n = round(x log2 e), r = x - n ln2 (ln2 split in two), a degree-6
//               polynomial for e^r, then 2^n built in the exponent bits, as 2^(n/2) 2^(n-n/2)
//               so that n = 128 (x just below the overflow point) and n = -150 (gradual
//               underflow) stay exact. x is clamped to [-104, 89] first: e^-104 rounds to 0,
//               e^89 to inf. NaN passes through every step.
//   tanh(x)     x P(x^2) / Q(x^2), degrees 13 and 6 (Eigen's fast tanh coefficients), on
//               |x| < 7.9053111, where it reaches 1; sign(x) from there on; x itself below
//               |x| = 4e-4. One division and 11 multiply-adds, no exp: cheaper than
//               sign(x) (1 - 2 / (e^2|x| + 1)), which needs an exp and a division;
//               worst relative error 2.8e-7 (benchmarks/check_vmath.cpp).
//   sigmoid(x)  e = e^-|x| (never overflows), s = 1 / (1 + e): s for x >= 0, e s for x < 0,
//               so sigmoid(-100) = 3.7e-44 exactly rounded, sigmoid(100) = 1, no inf/inf.
//   relu(x)     x < 0 ? 0 : x, so relu(NaN) = NaN as in NumPy's maximum(x, 0) and PyTorch: a NaN
//               input or weight shows in the output instead of turning into a confident 0.
//   leaky_relu  x > 0 ? x : alpha x (a compare and a select; NaN stays NaN).
//   elu         x > 0 ? x : alpha expm1(x). expm1 comes out of exp's own steps: with
//               e^x = 2^n (1 + q), q = r + p r^2, expm1(x) = 2^n q + (2^n - 1), so it keeps
//               full relative precision near 0 (n = 0 there: expm1 = q), where e^x - 1 would
//               cancel (x = -1e-4 would lose 3 digits).
//   gelu        x Phi(x), Phi(x) = 1 - h for x >= 0 and h below, h = Phi(-|x|) = erfc(|x|/sqrt2)/2
//               = t Q(t) g, t = 1/(1 + 0.3 |x|/sqrt2), g = e^(-x^2/2), Q of degree 8 (a minimax
//               fit of erfc(z) e^(z^2) / (2t), relative error 2e-8 for every z >= 0; Horner).
//               Through the tail h, not 1 + erf, so the negative tail keeps its relative
//               precision (bounded by -x^2/2 rounded to float: a few 1e-6 at x = -9). g is
//               2^w, w = -x^2 log2(e)/2 = k + f: 2^f by a degree-6 polynomial and k added into
//               the exponent bits, flushed to 0 below w = -124.9 (g < 3e-38, |x| > 13.1), so
//               one exp, one division and no second exp for the backward, which needs g too.
//               The AVX2 and AVX-512 builds run 4 vectors side by side (each step for all 4
//               before the next): one element's chain is long, and alone it leaves the FMA
//               units idle.
//   gelu_tanh   x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the same number as
//               0.5 x (1 + tanh(u)), through the sigmoid so the tail does not cancel either.
//   dropout     mask = random24(seed, step, i) >= ceil(rate 2^24) ? 1 / (1 - rate) : 0 and
//               y = x mask: the counter-based numbers of common/counter_rng.h, the same
//               masks as the CUDA kernel's; one plain loop (dropout_loop) in every build.
//   The GELU backward kernels take x and dy: dx = dy (Phi(x) + x phi(x)), phi = g / sqrt(2 pi)
//   the normal density, and for gelu_tanh dx = dy (s + 2 x s (1 - s) u'(x)), s = sigmoid(2u).
// Relative error against float64 is below about 3e-7 (a few ulp) everywhere they are finite.
//
// Builds: vmath.cpp (portable C++ written so the compiler vectorises it at the baseline ISA,
// plus the dispatch table), avx2/vmath_avx2.cpp (AVX2+FMA intrinsics, 8 lanes),
// avx512/vmath_avx512.cpp (AVX-512F, 16 lanes). vec_math() returns the first entry of the
// table that the selected ISA level may run (isa.h), picked once, so FASTCONV_ISA moves these
// kernels together with every other op family's.
#pragma once
#include <cstdint>

#include "common/counter_rng.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

// y[i] = f(x[i] + shift), i < n, single-threaded; y may equal x.
using VecFn = void (*)(const float* x, float shift, float* y, int64_t n);
// The same for an activation with a parameter: y[i] = f(x[i] + shift; alpha).
using VecParamFn = void (*)(const float* x, float shift, float* y, int64_t n, float alpha);
// An activation's backward from its input: dx[i] = dy[i] f'(x[i]); dx may equal dy.
using VecGradFn = void (*)(const float* x, const float* dy, float* dx, int64_t n);

// Inverted dropout over elements [first, first + n) of an array (x, y, mask point at element
// first): mask = random24(seed, step, index) >= threshold ? scale : 0, y = x mask
// (common/counter_rng.h).
using DropoutFn = void (*)(const float* x, float* y, float* mask, int64_t n, uint64_t first,
                           uint64_t seed, uint64_t step, uint32_t threshold, float scale);

// One ISA's set of kernels: an entry of vmath.cpp's dispatch table.
struct VecMath {
  VecFn identity, relu, exp, tanh, sigmoid;
  VecParamFn leaky_relu, elu, gelu, gelu_tanh;   // gelu and gelu_tanh ignore alpha
  VecGradFn gelu_backward, gelu_tanh_backward;
  DropoutFn dropout;
};

// The dropout loop every entry runs, written once and compiled in each ISA's file (the
// compiler vectorises the 64-bit hash: with AVX2 at about a quarter of the baseline's time).
// static: each file keeps its own copy, built with its own flags.
static inline void dropout_loop(const float* x, float* y, float* mask, int64_t n, uint64_t first,
                                uint64_t seed, uint64_t step, uint32_t threshold, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const float k = random24(seed, step, first + uint64_t(i)) >= threshold ? scale : 0.f;
    mask[i] = k;
    y[i] = x[i] * k;
  }
}

extern const VecMath kVecMathGeneric;
#ifdef FASTCONV_X86
extern const VecMath kVecMathAvx2;
extern const VecMath kVecMathAvx512;
#endif

// The kernels for this process: the dispatch table's pick for selected_isa(), made once.
const VecMath& vec_math();

// Leaky ReLU's and ELU's backward from the forward output y, alpha their parameter (dx may
// equal dy): dy where y > 0, else dy alpha (leaky; NaN where y is NaN) or dy (y + alpha) (elu).
// Portable loops, compiled where the compiler may vectorise the compare-and-select (vmath.cpp).
void leaky_relu_backward_from_output(const float* dy, const float* y, float* dx, int64_t n, float alpha);
void elu_backward_from_output(const float* dy, const float* y, float* dx, int64_t n, float alpha);

// An activation with its parameter, called like a VecFn: out(x, shift, y, n).
struct ActivationKernel {
  VecFn plain = nullptr;        // the activations without a parameter
  VecParamFn param = nullptr;   // or those with one (then alpha is passed along)
  float alpha = 0.f;
  void operator()(const float* x, float shift, float* y, int64_t n) const {
    if (param) param(x, shift, y, n, alpha);
    else plain(x, shift, y, n);
  }
};

// The kernel that applies `act` with parameter `alpha` (identity for Activation::None).
inline ActivationKernel activation_kernel(const VecMath& vm, Activation act, float alpha = 0.f) {
  switch (act) {
    case Activation::ReLU: return {vm.relu, nullptr, 0.f};
    case Activation::Tanh: return {vm.tanh, nullptr, 0.f};
    case Activation::Sigmoid: return {vm.sigmoid, nullptr, 0.f};
    case Activation::LeakyReLU: return {nullptr, vm.leaky_relu, alpha};
    case Activation::ELU: return {nullptr, vm.elu, alpha};
    case Activation::GELU: return {nullptr, vm.gelu, alpha};
    case Activation::GELUTanh: return {nullptr, vm.gelu_tanh, alpha};
    default: return {vm.identity, nullptr, 0.f};
  }
}

}  // namespace cpu
}  // namespace fastconv
