// Element-wise math with AVX2+FMA intrinsics, 8 floats a step (algorithm in vmath.h).
//
// Compiled with -mavx2 -mfma (CMake gives every file in csrc/cpu/avx2/ these flags) and reached
// only through vmath.cpp's dispatch table at the avx2 level. The tail of n % 8 elements goes through a
// small stack buffer so the same vector code handles it and nothing past y[n-1] is touched.
// Operand order in min/max matters: _mm256_min_ps(a, b) returns b when either is NaN, so the
// constant goes first and NaN inputs come out NaN.
#include <immintrin.h>

#include <cstring>

#include "cpu/vmath.h"

namespace fastconv {
namespace cpu {

namespace {

inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-104.f), x);
  x = _mm256_min_ps(_mm256_set1_ps(89.f), x);
  const __m256 magic = _mm256_set1_ps(12582912.f);
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  const __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(er, s1), s2);
}

// tanh (vmath.h): the rational form on x clamped to +-7.9053111; constants first in min/max.
inline __m256 tanh8(__m256 x) {
  const __m256 clamp = _mm256_set1_ps(7.90531110763549805f);
  const __m256 xc = _mm256_max_ps(_mm256_set1_ps(-7.90531110763549805f), _mm256_min_ps(clamp, x));
  const __m256 x2 = _mm256_mul_ps(xc, xc);
  __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(-2.76076847742355e-16f), _mm256_set1_ps(2.00018790482477e-13f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-8.60467152213735e-11f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(5.12229709037114e-08f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(1.48572235717979e-05f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(6.37261928875436e-04f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(4.89352455891786e-03f));
  p = _mm256_mul_ps(xc, p);
  __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(1.19825839466702e-06f), _mm256_set1_ps(1.18534705686654e-04f));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(2.26843463243900e-03f));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(4.89352518554385e-03f));
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
  const __m256 tiny = _mm256_cmp_ps(ax, _mm256_set1_ps(0.0004f), _CMP_LT_OQ);  // false for NaN
  const __m256 big = _mm256_cmp_ps(ax, clamp, _CMP_GE_OQ);  // +-1 exactly (FMA rounding aside)
  const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.f), _mm256_and_ps(_mm256_set1_ps(-0.f), x));
  return _mm256_blendv_ps(_mm256_blendv_ps(_mm256_div_ps(p, q), x, tiny), one, big);
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  const __m256 e = exp8(_mm256_or_ps(x, sign_mask));              // e^-|x|, never overflows
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));      // sigmoid(|x|)
  return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), x);              // x < 0 (sign bit): e/(1+e)
}

// expm1 from exp8's steps: 2^n q + (2^n - 1), q = e^r - 1 (vmath.h).
inline __m256 expm1_8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-104.f), x);
  x = _mm256_min_ps(_mm256_set1_ps(89.f), x);
  const __m256 magic = _mm256_set1_ps(12582912.f);
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  const __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 q = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  const __m256 scale = _mm256_mul_ps(s1, s2);
  return _mm256_fmadd_ps(q, scale, _mm256_sub_ps(scale, _mm256_set1_ps(1.f)));
}

inline __m256 clamp30_8(__m256 x) {  // NaN stays NaN: the constant goes first
  return _mm256_max_ps(_mm256_set1_ps(-30.f), _mm256_min_ps(_mm256_set1_ps(30.f), x));
}

inline __m256 leaky_relu8(__m256 x, __m256 a) {
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);  // false for NaN
  return _mm256_blendv_ps(_mm256_mul_ps(a, x), x, pos);
}
inline __m256 elu8(__m256 x, __m256 a) {
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(_mm256_mul_ps(a, expm1_8(x)), x, pos);
}
inline __m256 gelu_tanh_arg8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  return _mm256_mul_ps(_mm256_set1_ps(1.59576912160573071f),
                       _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
}
inline __m256 gelu_tanh8(__m256 x, __m256) { return _mm256_mul_ps(x, sigmoid8(gelu_tanh_arg8(x))); }
inline __m256 gelu_tanh_grad8(__m256 x) {
  const __m256 s = sigmoid8(gelu_tanh_arg8(x));
  const __m256 xc = clamp30_8(x);
  const __m256 du = _mm256_mul_ps(_mm256_set1_ps(1.59576912160573071f),
                                  _mm256_fmadd_ps(_mm256_set1_ps(0.134145f), _mm256_mul_ps(xc, xc),
                                                  _mm256_set1_ps(1.f)));
  const __m256 ss = _mm256_mul_ps(s, _mm256_sub_ps(_mm256_set1_ps(1.f), s));
  return _mm256_fmadd_ps(_mm256_mul_ps(xc, ss), du, s);
}

inline __m256 relu8(__m256 x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }  // NaN -> NaN
inline __m256 identity8(__m256 x) { return x; }

// GELU (vmath.h) over U vectors at once. Each step is written for all U vectors before the
// next, so the U dependency chains (a division and two polynomials each) run side by side; a
// chain alone leaves the FMA units idle most of the time.
#define FASTCONV_FOR_U for (int u = 0; u < U; ++u)

// cdf = Phi(x) and g = e^(-x^2/2) (vmath.cpp: gauss_f32, normal_tail_f32; same constants).
template <int U>
inline void gelu_parts8(const __m256 (&x)[U], __m256 (&cdf)[U], __m256 (&g)[U]) {
  const __m256 magic = _mm256_set1_ps(12582912.f), one = _mm256_set1_ps(1.f);
  __m256 w[U], kt[U], keep[U], t[U];
  // g = 2^w, w = -x^2 log2(e) / 2 = k + f; 2^k added into the exponent bits; 0 below -124.9.
  FASTCONV_FOR_U w[u] = _mm256_mul_ps(_mm256_mul_ps(x[u], x[u]), _mm256_set1_ps(-0.72134752044448170f));
  FASTCONV_FOR_U keep[u] = _mm256_cmp_ps(w[u], _mm256_set1_ps(-124.9f), _CMP_GE_OQ);  // false for NaN
  FASTCONV_FOR_U w[u] = _mm256_max_ps(_mm256_set1_ps(-124.9f), w[u]);
  FASTCONV_FOR_U kt[u] = _mm256_add_ps(w[u], magic);
  FASTCONV_FOR_U w[u] = _mm256_sub_ps(w[u], _mm256_sub_ps(kt[u], magic));   // f in [-1/2, 1/2]
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(_mm256_set1_ps(1.535334159e-4f), w[u], _mm256_set1_ps(1.339887269e-3f));
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(g[u], w[u], _mm256_set1_ps(9.618437849e-3f));
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(g[u], w[u], _mm256_set1_ps(5.550332367e-2f));
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(g[u], w[u], _mm256_set1_ps(2.402264774e-1f));
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(g[u], w[u], _mm256_set1_ps(6.931471825e-1f));
  FASTCONV_FOR_U g[u] = _mm256_fmadd_ps(g[u], w[u], one);
  FASTCONV_FOR_U g[u] = _mm256_and_ps(keep[u], _mm256_castsi256_ps(_mm256_add_epi32(
      _mm256_castps_si256(g[u]), _mm256_slli_epi32(_mm256_castps_si256(kt[u]), 23))));
  // Phi(-|x|) = t Q(t) g, t = 1 / (1 + 0.3 |x| / sqrt2).
  FASTCONV_FOR_U t[u] = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), x[u]),
                                                           _mm256_set1_ps(0.2121320366859436f), one));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(_mm256_set1_ps(-6.477658451e-02f), t[u], _mm256_set1_ps(2.428612560e-01f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(-2.563187778e-01f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(2.740867436e-01f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(-4.749993607e-02f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(1.075469255e-01f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(7.414504886e-02f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(8.536159992e-02f));
  FASTCONV_FOR_U cdf[u] = _mm256_fmadd_ps(cdf[u], t[u], _mm256_set1_ps(8.459372818e-02f));
  FASTCONV_FOR_U cdf[u] = _mm256_mul_ps(_mm256_mul_ps(cdf[u], t[u]), g[u]);
  // x < 0 (sign bit): the tail itself; else 1 minus it.
  FASTCONV_FOR_U cdf[u] = _mm256_blendv_ps(_mm256_sub_ps(one, cdf[u]), cdf[u], x[u]);
}

// y = x Phi(x) for U vectors of x + shift.
template <int U>
inline void gelu_block8(const float* x, __m256 shift, float* y) {
  __m256 v[U], cdf[U], g[U];
  FASTCONV_FOR_U v[u] = _mm256_add_ps(_mm256_loadu_ps(x + 8 * u), shift);
  gelu_parts8<U>(v, cdf, g);
  FASTCONV_FOR_U _mm256_storeu_ps(y + 8 * u, _mm256_mul_ps(v[u], cdf[u]));
}

// dx = dy (Phi(x) + x phi(x)) for U vectors; x clamped to +-30 where it multiplies phi (0 there).
template <int U>
inline void gelu_grad_block8(const float* x, const float* dy, float* dx) {
  __m256 v[U], cdf[U], g[U];
  FASTCONV_FOR_U v[u] = _mm256_loadu_ps(x + 8 * u);
  gelu_parts8<U>(v, cdf, g);
  FASTCONV_FOR_U {
    const __m256 grad = _mm256_fmadd_ps(clamp30_8(v[u]), _mm256_mul_ps(g[u], _mm256_set1_ps(0.398942280401432678f)),
                                        cdf[u]);
    _mm256_storeu_ps(dx + 8 * u, _mm256_mul_ps(_mm256_loadu_ps(dy + 8 * u), grad));
  }
}
#undef FASTCONV_FOR_U

void gelu_avx2(const float* x, float shift, float* y, int64_t n, float) {
  const __m256 vs = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) gelu_block8<4>(x + i, vs, y + i);
  for (; i + 8 <= n; i += 8) gelu_block8<1>(x + i, vs, y + i);
  if (i < n) {
    alignas(32) float buf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const size_t rest = size_t(n - i) * sizeof(float);
    std::memcpy(buf, x + i, rest);
    gelu_block8<1>(buf, vs, buf);
    std::memcpy(y + i, buf, rest);
  }
}

void gelu_backward_avx2(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) gelu_grad_block8<4>(x + i, dy + i, dx + i);
  for (; i + 8 <= n; i += 8) gelu_grad_block8<1>(x + i, dy + i, dx + i);
  if (i < n) {
    alignas(32) float bx[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    alignas(32) float bg[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const size_t rest = size_t(n - i) * sizeof(float);
    std::memcpy(bx, x + i, rest);
    std::memcpy(bg, dy + i, rest);
    gelu_grad_block8<1>(bx, bg, bg);
    std::memcpy(dx + i, bg, rest);
  }
}

// y[i] = f(x[i] + shift) over n elements, 8 at a time, the tail through a buffer.
template <__m256 (*f)(__m256)>
void apply(const float* x, float shift, float* y, int64_t n) {
  const __m256 vs = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {  // two independent vectors a step hide the FMA latency
    const __m256 a = f(_mm256_add_ps(_mm256_loadu_ps(x + i), vs));
    const __m256 b = f(_mm256_add_ps(_mm256_loadu_ps(x + i + 8), vs));
    _mm256_storeu_ps(y + i, a);
    _mm256_storeu_ps(y + i + 8, b);
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_add_ps(_mm256_loadu_ps(x + i), vs)));
  if (i < n) {
    alignas(32) float buf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const size_t rest = size_t(n - i) * sizeof(float);
    std::memcpy(buf, x + i, rest);
    _mm256_store_ps(buf, f(_mm256_add_ps(_mm256_load_ps(buf), vs)));
    std::memcpy(y + i, buf, rest);
  }
}

// The same with a parameter: y[i] = f(x[i] + shift; alpha).
template <__m256 (*f)(__m256, __m256)>
void apply_param(const float* x, float shift, float* y, int64_t n, float alpha) {
  const __m256 vs = _mm256_set1_ps(shift), va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = f(_mm256_add_ps(_mm256_loadu_ps(x + i), vs), va);
    const __m256 b = f(_mm256_add_ps(_mm256_loadu_ps(x + i + 8), vs), va);
    _mm256_storeu_ps(y + i, a);
    _mm256_storeu_ps(y + i + 8, b);
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_add_ps(_mm256_loadu_ps(x + i), vs), va));
  if (i < n) {
    alignas(32) float buf[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const size_t rest = size_t(n - i) * sizeof(float);
    std::memcpy(buf, x + i, rest);
    _mm256_store_ps(buf, f(_mm256_add_ps(_mm256_load_ps(buf), vs), va));
    std::memcpy(y + i, buf, rest);
  }
}

// dx[i] = dy[i] * f'(x[i]), fprime giving f'.
template <__m256 (*fprime)(__m256)>
void apply_grad(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), fprime(_mm256_loadu_ps(x + i))));
  if (i < n) {
    alignas(32) float bx[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    alignas(32) float bg[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const size_t rest = size_t(n - i) * sizeof(float);
    std::memcpy(bx, x + i, rest);
    std::memcpy(bg, dy + i, rest);
    _mm256_store_ps(bx, _mm256_mul_ps(_mm256_load_ps(bg), fprime(_mm256_load_ps(bx))));
    std::memcpy(dx + i, bx, rest);
  }
}

}  // namespace

const VecMath kVecMathAvx2 = {apply<identity8>, apply<relu8>, apply<exp8>, apply<tanh8>,
                              apply<sigmoid8>, apply_param<leaky_relu8>, apply_param<elu8>,
                              gelu_avx2, apply_param<gelu_tanh8>, gelu_backward_avx2,
                              apply_grad<gelu_tanh_grad8>,
                              dropout_loop};

}  // namespace cpu
}  // namespace fastconv
