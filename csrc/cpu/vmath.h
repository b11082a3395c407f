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
//               |x| = 4e-4. One division and 11 multiply-adds, no exp: twice as fast as
//               sign(x) (1 - 2 / (e^2|x| + 1)) was (1.3 against 2.6 ns an element on the
//               EPYC), worst relative error 2.8e-7 (benchmarks/check_vmath.cpp).
//   sigmoid(x)  e = e^-|x| (never overflows), s = 1 / (1 + e): s for x >= 0, e s for x < 0,
//               so sigmoid(-100) = 3.7e-44 exactly rounded, sigmoid(100) = 1, no inf/inf.
//   relu(x)     x < 0 ? 0 : x, so relu(NaN) = NaN as in NumPy's maximum(x, 0) and PyTorch: a NaN
//               input or weight shows in the output instead of turning into a confident 0.
// Relative error against float64 is below about 3e-7 (a few ulp) everywhere they are finite.
//
// Builds: vmath.cpp (portable C++ written so the compiler vectorises it at the baseline ISA,
// plus the dispatch), vmath_avx2.cpp (AVX2+FMA intrinsics, 8 lanes), vmath_avx512.cpp
// (AVX-512F, 16 lanes). vec_math() picks one once, following the GEMM's choice (sgemm_isa(),
// which honours FASTCONV_ISA), so one environment variable moves every kernel together.
#pragma once
#include <cstdint>

#include "ops.h"

namespace fastconv {
namespace cpu {

// y[i] = f(x[i] + shift), i < n, single-threaded; y may equal x.
using VecFn = void (*)(const float* x, float shift, float* y, int64_t n);

struct VecMath {
  const char* isa;  // "avx512", "avx2" or "generic"
  VecFn identity, relu, exp, tanh, sigmoid;
};

extern const VecMath kVecMathGeneric;
#ifdef FASTCONV_X86
extern const VecMath kVecMathAvx2;
extern const VecMath kVecMathAvx512;
#endif

// The kernels for this machine: those of the ISA sgemm_isa() names, chosen on first use.
const VecMath& vec_math();

// The kernel that applies `act` (identity for Activation::None).
inline VecFn activation_kernel(const VecMath& vm, Activation act) {
  switch (act) {
    case Activation::ReLU: return vm.relu;
    case Activation::Tanh: return vm.tanh;
    case Activation::Sigmoid: return vm.sigmoid;
    default: return vm.identity;
  }
}

}  // namespace cpu
}  // namespace fastconv
