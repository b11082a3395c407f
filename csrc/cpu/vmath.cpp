// Portable element-wise math (the algorithm is described in vmath.h) and the dispatch table.
//
// Written as branch-free scalar functions over one float, inlined into plain loops: every
// step is an add, multiply, compare-and-select or integer shift on the float's bits, so the
// compiler vectorises the loops at the baseline ISA (SSE2 on x86-64) with no calls to libm.
// GCC if-converts the float compare-and-selects only when it may assume compares do not trap
// (the default -ftrapping-math keeps every loop scalar, an order of magnitude slower), hence the pragma; the
// results are the same, only the floating-point exception flags may differ.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <cstring>

#include "cpu/isa.h"
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
  const float c = 7.90531110763549805f;
  const float xc = x < -c ? -c : (x > c ? c : x);   // NaN stays NaN (both compares false)
  const float x2 = xc * xc;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p - 8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  const float r = ax < 0.0004f ? x : (xc * p) / q;
  return ax >= c ? (x < 0.f ? -1.f : 1.f) : r;      // no branch: the compiler vectorises it
}

// e = e^-|x| never overflows; 1/(1+e) is sigmoid(|x|), and e/(1+e) is sigmoid(-|x|).
inline float sigmoid_f32(float x) {
  const float e = exp_f32(x < 0.f ? x : -x);
  const float s = 1.f / (1.f + e);
  return x < 0.f ? e * s : s;
}

// expm1 from exp's steps (vmath.h): e^x = 2^n (1 + q), so e^x - 1 = 2^n q + (2^n - 1).
inline float expm1_f32(float x) {
  x = clamp(x, -104.f, 89.f);
  const float magic = 12582912.f;
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  const int32_t ni = float_to_bits(t) - 0x4B400000;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float q = p * (r * r) + r;                  // e^r - 1
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float scale = bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
  return q * scale + (scale - 1.f);
}

// e^(-x^2/2), the normal density without its 1/sqrt(2 pi), as 2^w with w = -x^2 log2(e) / 2:
// w = k + f, k = round(w), f in [-1/2, 1/2], 2^f by a degree-6 polynomial, and 2^k added
// straight into the exponent bits (k >= -125, so the result is a normal float). Below
// w = -124.9 (e^(-x^2/2) < 3e-38, |x| > 13.1) the result is flushed to 0; NaN gives 0 (the
// callers' other factors carry the NaN).
inline float gauss_f32(float x) {
  float w = x * x * -0.72134752044448170f;
  const bool keep = w >= -124.9f;                   // false for NaN
  w = w < -124.9f ? -124.9f : w;
  const float magic = 12582912.f;
  const float kt = w + magic;                       // k in kt's low mantissa bits
  const float f = w - (kt - magic);
  float p = 1.535334159e-4f;
  p = p * f + 1.339887269e-3f;
  p = p * f + 9.618437849e-3f;
  p = p * f + 5.550332367e-2f;
  p = p * f + 2.402264774e-1f;
  p = p * f + 6.931471825e-1f;
  p = p * f + 1.f;                                  // 2^f
  // (kt's bits - 0x4B400000) << 23 is k << 23: the magic's low 9 bits are zero.
  const uint32_t scaled = uint32_t(float_to_bits(p)) + (uint32_t(float_to_bits(kt)) << 23);
  return keep ? bits_to_float(int32_t(scaled)) : 0.f;
}

// Phi(-|x|) = erfc(|x|/sqrt2)/2 = t Q(t) e^(-x^2/2), t = 1 / (1 + 0.3 |x|/sqrt2), Q of degree 8
// (vmath.h); g = gauss_f32(x).
inline float normal_tail_f32(float x, float g) {
  const float ax = x < 0.f ? -x : x;
  const float t = 1.f / (1.f + 0.2121320366859436f * ax);
  float q = -6.477658451e-02f;
  q = q * t + 2.428612560e-01f;
  q = q * t - 2.563187778e-01f;
  q = q * t + 2.740867436e-01f;
  q = q * t - 4.749993607e-02f;
  q = q * t + 1.075469255e-01f;
  q = q * t + 7.414504886e-02f;
  q = q * t + 8.536159992e-02f;
  q = q * t + 8.459372818e-02f;
  return q * t * g;
}

// Phi(x), the standard normal CDF, through the tail on both sides (no 1 + erf cancellation).
inline float normal_cdf_f32(float x, float g) {
  const float h = normal_tail_f32(x, g);
  return x < 0.f ? h : 1.f - h;
}

// x clamped to [-30, 30] with NaN kept: the factor x multiplies a density that is 0 out there.
inline float clamp30(float x) { return clamp(x, -30.f, 30.f); }

inline float leaky_relu_f32(float x, float a) { return x > 0.f ? x : a * x; }
inline float elu_f32(float x, float a) { return x > 0.f ? x : a * expm1_f32(x); }
inline float gelu_f32(float x) { return x * normal_cdf_f32(x, gauss_f32(x)); }
inline float gelu_grad_f32(float x) {              // Phi(x) + x phi(x)
  const float g = gauss_f32(x);
  return clamp30(x) * (g * 0.398942280401432678f) + normal_cdf_f32(x, g);
}
// 2u = 2 sqrt(2/pi) (x + 0.044715 x^3)
inline float gelu_tanh_arg(float x) { return 1.59576912160573071f * (x + 0.044715f * x * x * x); }
inline float gelu_tanh_f32(float x) { return x * sigmoid_f32(gelu_tanh_arg(x)); }
inline float gelu_tanh_grad_f32(float x) {         // s + x s (1 - s) (2u)'
  const float s = sigmoid_f32(gelu_tanh_arg(x));
  const float xc = clamp30(x);
  const float du = 1.59576912160573071f * (1.f + 0.134145f * xc * xc);
  return xc * (s * (1.f - s)) * du + s;
}

void identity_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] + shift;
}
void relu_generic(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) { const float v = x[i] + shift; y[i] = v < 0.f ? 0.f : v; }  // NaN stays NaN
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

void leaky_relu_generic(const float* x, float shift, float* y, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) y[i] = leaky_relu_f32(x[i] + shift, a);
}
void elu_generic(const float* x, float shift, float* y, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) y[i] = elu_f32(x[i] + shift, a);
}
void gelu_generic(const float* x, float shift, float* y, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_f32(x[i] + shift);
}
void gelu_tanh_generic(const float* x, float shift, float* y, int64_t n, float) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_f32(x[i] + shift);
}
void gelu_backward_generic(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_grad_f32(x[i]);
}
void gelu_tanh_backward_generic(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_tanh_grad_f32(x[i]);
}

}  // namespace

void leaky_relu_backward_from_output(const float* dy, const float* y, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = y[i], g = dy[i];
    const float d = v > 0.f ? g : g * alpha;
    dx[i] = v != v ? v : d;
  }
}

void elu_backward_from_output(const float* dy, const float* y, float* dx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = y[i], g = dy[i];
    dx[i] = v > 0.f ? g : g * (v + alpha);          // NaN + alpha is NaN
  }
}

const VecMath kVecMathGeneric = {identity_generic, relu_generic, exp_generic,
                                 tanh_generic, sigmoid_generic, leaky_relu_generic, elu_generic,
                                 gelu_generic, gelu_tanh_generic, gelu_backward_generic,
                                 gelu_tanh_backward_generic,
                                 dropout_loop};

namespace {

struct VecMathEntry {
  Isa needs;
  const VecMath* kernels;
};

// The element-wise kernels by ISA, in priority order (isa.h).
//                          needs         kernels
const VecMathEntry kVecMathTable[] = {
#ifdef FASTCONV_X86
    {Isa::Avx512, &kVecMathAvx512},   // avx512/vmath_avx512.cpp
    {Isa::Avx2, &kVecMathAvx2},       // avx2/vmath_avx2.cpp
#endif
    {Isa::Generic, &kVecMathGeneric},  // above
};

}  // namespace

const VecMath& vec_math() {
  static const VecMath& chosen = *first_runnable(kVecMathTable).kernels;  // thread-safe, once
  return chosen;
}

}  // namespace cpu
}  // namespace fastconv
