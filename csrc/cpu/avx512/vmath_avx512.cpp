// Element-wise math with AVX-512F intrinsics, 16 floats a step (algorithm in vmath.h).
//
// Compiled with AVX-512 flags (CMake gives every file in csrc/cpu/avx512/ them) and reached
// only through vmath.cpp's dispatch table at the avx512 level. The same steps as vmath_avx2.cpp, with mask
// registers for the compare-and-select and a masked load/store for the tail of n % 16.
// Written by construction from the AVX2 version (the development machine has no AVX-512);
// FASTCONV_ISA=avx512 on an AVX-512 machine runs the test suite through it.
#include <immintrin.h>

#include "cpu/vmath.h"

namespace fastconv {
namespace cpu {

namespace {

inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);   // (a, b): b when either is NaN
  x = _mm512_min_ps(_mm512_set1_ps(89.f), x);
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
  const __m512 n = _mm512_sub_ps(t, magic);
  const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  const __m512i n1 = _mm512_srai_epi32(ni, 1);
  const __m512i n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(er, s1), s2);
}

inline __m512 tanh16(__m512 x) {
  const __m512 clamp = _mm512_set1_ps(7.90531110763549805f);
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-7.90531110763549805f), _mm512_min_ps(clamp, x));
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(-2.76076847742355e-16f), _mm512_set1_ps(2.00018790482477e-13f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-8.60467152213735e-11f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(5.12229709037114e-08f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(1.48572235717979e-05f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(6.37261928875436e-04f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(4.89352455891786e-03f));
  p = _mm512_mul_ps(xc, p);
  __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(1.19825839466702e-06f), _mm512_set1_ps(1.18534705686654e-04f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(2.26843463243900e-03f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(4.89352518554385e-03f));
  const __m512i sign_mask = _mm512_set1_epi32(int32_t(0x80000000u));
  const __m512i xi = _mm512_castps_si512(x);
  const __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_mask, xi));
  const __m512 one = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.f)), _mm512_and_si512(sign_mask, xi)));
  const __mmask16 tiny = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.0004f), _CMP_LT_OQ);  // not NaN
  const __mmask16 big = _mm512_cmp_ps_mask(ax, clamp, _CMP_GE_OQ);
  return _mm512_mask_blend_ps(big, _mm512_mask_blend_ps(tiny, _mm512_div_ps(p, q), x), one);
}

inline __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512i sign_mask = _mm512_set1_epi32(int32_t(0x80000000u));
  const __m512i xi = _mm512_castps_si512(x);
  const __m512 e = exp16(_mm512_castsi512_ps(_mm512_or_si512(xi, sign_mask)));  // e^-|x|
  const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));                  // sigmoid(|x|)
  const __mmask16 negative = _mm512_movepi32_mask(xi);                         // sign bit set
  return _mm512_mask_blend_ps(negative, s, _mm512_mul_ps(e, s));               // e/(1+e) there
}

// expm1 from exp16's steps: 2^n q + (2^n - 1), q = e^r - 1 (vmath.h).
inline __m512 expm1_16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);
  x = _mm512_min_ps(_mm512_set1_ps(89.f), x);
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
  const __m512 n = _mm512_sub_ps(t, magic);
  const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 q = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  const __m512i n1 = _mm512_srai_epi32(ni, 1);
  const __m512i n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  const __m512 scale = _mm512_mul_ps(s1, s2);
  return _mm512_fmadd_ps(q, scale, _mm512_sub_ps(scale, _mm512_set1_ps(1.f)));
}

inline __m512 clamp30_16(__m512 x) {
  return _mm512_max_ps(_mm512_set1_ps(-30.f), _mm512_min_ps(_mm512_set1_ps(30.f), x));
}

inline __m512 leaky_relu16(__m512 x, __m512 a) {
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(pos, _mm512_mul_ps(a, x), x);
}
inline __m512 elu16(__m512 x, __m512 a) {
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(pos, _mm512_mul_ps(a, expm1_16(x)), x);
}
inline __m512 gelu_tanh_arg16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  return _mm512_mul_ps(_mm512_set1_ps(1.59576912160573071f),
                       _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
}
inline __m512 gelu_tanh16(__m512 x, __m512) { return _mm512_mul_ps(x, sigmoid16(gelu_tanh_arg16(x))); }
inline __m512 gelu_tanh_grad16(__m512 x) {
  const __m512 s = sigmoid16(gelu_tanh_arg16(x));
  const __m512 xc = clamp30_16(x);
  const __m512 du = _mm512_mul_ps(_mm512_set1_ps(1.59576912160573071f),
                                  _mm512_fmadd_ps(_mm512_set1_ps(0.134145f), _mm512_mul_ps(xc, xc),
                                                  _mm512_set1_ps(1.f)));
  const __m512 ss = _mm512_mul_ps(s, _mm512_sub_ps(_mm512_set1_ps(1.f), s));
  return _mm512_fmadd_ps(_mm512_mul_ps(xc, ss), du, s);
}

inline __m512 relu16(__m512 x) { return _mm512_max_ps(_mm512_setzero_ps(), x); }  // NaN -> NaN
inline __m512 identity16(__m512 x) { return x; }

// GELU (vmath.h) over U vectors at once, each step for all U before the next, so the U
// dependency chains run side by side (as in avx2/vmath_avx2.cpp).
#define FASTCONV_FOR_U for (int u = 0; u < U; ++u)

// cdf = Phi(x) and g = e^(-x^2/2) (vmath.cpp: gauss_f32, normal_tail_f32; same constants).
template <int U>
inline void gelu_parts16(const __m512 (&x)[U], __m512 (&cdf)[U], __m512 (&g)[U]) {
  const __m512 magic = _mm512_set1_ps(12582912.f), one = _mm512_set1_ps(1.f);
  __m512 w[U], kt[U], t[U];
  __mmask16 keep[U];
  // g = 2^w, w = -x^2 log2(e) / 2 = k + f; 2^k added into the exponent bits; 0 below -124.9.
  FASTCONV_FOR_U w[u] = _mm512_mul_ps(_mm512_mul_ps(x[u], x[u]), _mm512_set1_ps(-0.72134752044448170f));
  FASTCONV_FOR_U keep[u] = _mm512_cmp_ps_mask(w[u], _mm512_set1_ps(-124.9f), _CMP_GE_OQ);  // false for NaN
  FASTCONV_FOR_U w[u] = _mm512_max_ps(_mm512_set1_ps(-124.9f), w[u]);
  FASTCONV_FOR_U kt[u] = _mm512_add_ps(w[u], magic);
  FASTCONV_FOR_U w[u] = _mm512_sub_ps(w[u], _mm512_sub_ps(kt[u], magic));   // f in [-1/2, 1/2]
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(_mm512_set1_ps(1.535334159e-4f), w[u], _mm512_set1_ps(1.339887269e-3f));
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(g[u], w[u], _mm512_set1_ps(9.618437849e-3f));
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(g[u], w[u], _mm512_set1_ps(5.550332367e-2f));
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(g[u], w[u], _mm512_set1_ps(2.402264774e-1f));
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(g[u], w[u], _mm512_set1_ps(6.931471825e-1f));
  FASTCONV_FOR_U g[u] = _mm512_fmadd_ps(g[u], w[u], one);
  FASTCONV_FOR_U g[u] = _mm512_maskz_mov_ps(keep[u], _mm512_castsi512_ps(_mm512_add_epi32(
      _mm512_castps_si512(g[u]), _mm512_slli_epi32(_mm512_castps_si512(kt[u]), 23))));
  // Phi(-|x|) = t Q(t) g, t = 1 / (1 + 0.3 |x| / sqrt2).
  FASTCONV_FOR_U t[u] = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_abs_ps(x[u]),
                                                           _mm512_set1_ps(0.2121320366859436f), one));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(_mm512_set1_ps(-6.477658451e-02f), t[u], _mm512_set1_ps(2.428612560e-01f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(-2.563187778e-01f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(2.740867436e-01f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(-4.749993607e-02f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(1.075469255e-01f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(7.414504886e-02f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(8.536159992e-02f));
  FASTCONV_FOR_U cdf[u] = _mm512_fmadd_ps(cdf[u], t[u], _mm512_set1_ps(8.459372818e-02f));
  FASTCONV_FOR_U cdf[u] = _mm512_mul_ps(_mm512_mul_ps(cdf[u], t[u]), g[u]);
  // x < 0 (sign bit): the tail itself; else 1 minus it.
  FASTCONV_FOR_U cdf[u] = _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(x[u])),
                                               _mm512_sub_ps(one, cdf[u]), cdf[u]);
}

// dy (Phi(x) + x phi(x)); x clamped to +-30 where it multiplies phi (0 there).
inline __m512 gelu_grad16(__m512 x, __m512 cdf, __m512 g, __m512 dy) {
  return _mm512_mul_ps(dy, _mm512_fmadd_ps(clamp30_16(x), _mm512_mul_ps(g, _mm512_set1_ps(0.398942280401432678f)), cdf));
}

void gelu_avx512(const float* x, float shift, float* y, int64_t n, float) {
  const __m512 vs = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    constexpr int U = 4;
    __m512 v[U], cdf[U], g[U];
    FASTCONV_FOR_U v[u] = _mm512_add_ps(_mm512_loadu_ps(x + i + 16 * u), vs);
    gelu_parts16<U>(v, cdf, g);
    FASTCONV_FOR_U _mm512_storeu_ps(y + i + 16 * u, _mm512_mul_ps(v[u], cdf[u]));
  }
  for (; i < n; i += 16) {                  // the rest 16 at a time, the last ones masked
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 v[1] = {_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), vs)}, cdf[1], g[1];
    gelu_parts16<1>(v, cdf, g);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(v[0], cdf[0]));
  }
}

void gelu_backward_avx512(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    constexpr int U = 4;
    __m512 v[U], cdf[U], g[U];
    FASTCONV_FOR_U v[u] = _mm512_loadu_ps(x + i + 16 * u);
    gelu_parts16<U>(v, cdf, g);
    FASTCONV_FOR_U _mm512_storeu_ps(dx + i + 16 * u, gelu_grad16(v[u], cdf[u], g[u], _mm512_loadu_ps(dy + i + 16 * u)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 v[1] = {_mm512_maskz_loadu_ps(m, x + i)}, cdf[1], g[1];
    gelu_parts16<1>(v, cdf, g);
    _mm512_mask_storeu_ps(dx + i, m, gelu_grad16(v[0], cdf[0], g[0], _mm512_maskz_loadu_ps(m, dy + i)));
  }
}
#undef FASTCONV_FOR_U

template <__m512 (*f)(__m512)>
void apply(const float* x, float shift, float* y, int64_t n) {
  const __m512 vs = _mm512_set1_ps(shift);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_add_ps(_mm512_loadu_ps(x + i), vs)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_add_ps(v, vs)));
  }
}

template <__m512 (*f)(__m512, __m512)>
void apply_param(const float* x, float shift, float* y, int64_t n, float alpha) {
  const __m512 vs = _mm512_set1_ps(shift), va = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_add_ps(_mm512_loadu_ps(x + i), vs), va));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_add_ps(v, vs), va));
  }
}

template <__m512 (*fprime)(__m512)>
void apply_grad(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dy + i), fprime(_mm512_loadu_ps(x + i))));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i), g = _mm512_maskz_loadu_ps(m, dy + i);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(g, fprime(v)));
  }
}

}  // namespace

const VecMath kVecMathAvx512 = {apply<identity16>, apply<relu16>, apply<exp16>,
                                apply<tanh16>, apply<sigmoid16>, apply_param<leaky_relu16>,
                                apply_param<elu16>, gelu_avx512, apply_param<gelu_tanh16>,
                                gelu_backward_avx512, apply_grad<gelu_tanh_grad16>,
                                dropout_loop};

}  // namespace cpu
}  // namespace fastconv
