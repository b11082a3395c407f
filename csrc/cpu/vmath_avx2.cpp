// Element-wise math with AVX2+FMA intrinsics, 8 floats a step (algorithm in vmath.h).
//
// Compiled with -mavx2 -mfma (CMake gives every *avx2* file these flags) and reached only
// through vec_math() when sgemm_isa() is "avx2". The tail of n % 8 elements goes through a
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

inline __m256 tanh8(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  const __m256 ax = _mm256_andnot_ps(sign_mask, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 e = exp8(_mm256_add_ps(ax, ax));
  const __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, one)));
  const __m256 big_signed = _mm256_or_ps(big, _mm256_and_ps(sign_mask, x));
  const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);  // false for NaN
  return _mm256_blendv_ps(big_signed, small, is_small);
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  const __m256 e = exp8(_mm256_or_ps(x, sign_mask));              // e^-|x|, never overflows
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));      // sigmoid(|x|)
  return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), x);              // x < 0 (sign bit): e/(1+e)
}

inline __m256 relu8(__m256 x) { return _mm256_max_ps(x, _mm256_setzero_ps()); }  // NaN -> 0
inline __m256 identity8(__m256 x) { return x; }

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

}  // namespace

const VecMath kVecMathAvx2 = {"avx2", apply<identity8>, apply<relu8>, apply<exp8>, apply<tanh8>,
                              apply<sigmoid8>};

}  // namespace cpu
}  // namespace fastconv
