// Portable element-wise math (the algorithm is described in vmath.h) and the ISA dispatch.
//
// Written as branch-free scalar functions over one float, inlined into plain loops: every
// step is an add, multiply, compare-and-select or integer shift on the float's bits, so the
// compiler vectorises the loops at the baseline ISA (SSE2 on x86-64) with no calls to libm.
// GCC if-converts the float compare-and-selects only when it may assume compares do not trap
// (the default -ftrapping-math keeps every loop scalar, 10x slower), hence the pragma; the
// results are the same, only the floating-point exception flags may differ.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <cstring>

#include "cpu/gemm/sgemm.h"
#include "cpu/vmath.h"

namespace fastconv {
namespace cpu {

namespace {

inline float bits_to_float(int32_t i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int32_t float_to_bits(float f) { int32_t i; std::memcpy(&i, &f, 4); return i; }

// Written so NaN survives: a comparison with NaN is false, so the select keeps x.
inline float clamp(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

inline float exp_f32(float x) {
  x = clamp(x, -104.f, 89.f);
  const float magic = 12582912.f;                   // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;                        // round(x log2 e)
  const int32_t ni = float_to_bits(t) - 0x4B400000; // the same integer, from t's mantissa
  float r = x - n * 0.693359375f;                   // x - n ln2, ln2 in two parts
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = (p * (r * r) + r) + 1.f;         // e^r, |r| <= ln2 / 2
  const int32_t n1 = ni >> 1, n2 = ni - n1;         // 2^n = 2^n1 2^n2, each a normal float
  return er * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
}

inline float tanh_f32(float x) {
  const float ax = x < 0.f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = (p * z) * x + x;              // |x| < 0.625
  const float big = 1.f - 2.f / (exp_f32(2.f * ax) + 1.f);
  const float big_signed = x < 0.f ? -big : big;
  return ax < 0.625f ? small : big_signed;          // NaN: ax < 0.625 is false, big is NaN
}

// e = e^-|x| never overflows; 1/(1+e) is sigmoid(|x|), and e/(1+e) is sigmoid(-|x|).
inline float sigmoid_f32(float x) {
  const float e = exp_f32(x < 0.f ? x : -x);
  const float s = 1.f / (1.f + e);
  return x < 0.f ? e * s : s;
}

void identity_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] + shift;
}
void relu_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) { const float v = x[i] + shift; y[i] = v > 0.f ? v : 0.f; }
}
void exp_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i] + shift);
}
void tanh_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_f32(x[i] + shift);
}
void sigmoid_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_f32(x[i] + shift);
}

const VecMath& pick() {
  const char* isa = sgemm_isa();
#ifdef FASTCONV_X86
  if (std::strcmp(isa, "avx512") == 0) return kVecMathAvx512;
  if (std::strcmp(isa, "avx2") == 0) return kVecMathAvx2;
#endif
  (void)isa;
  return kVecMathGeneric;
}

}  // namespace

const VecMath kVecMathGeneric = {"generic", identity_generic, relu_generic, exp_generic,
                                 tanh_generic, sigmoid_generic};

const VecMath& vec_math() {
  static const VecMath& chosen = pick();
  return chosen;
}

}  // namespace cpu
}  // namespace fastconv
