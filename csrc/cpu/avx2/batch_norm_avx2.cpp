// Batch normalisation's per-plane loops with AVX2 (batch_norm_kernels.h): the portable loops
// of batch_norm.cpp, whose 8 float lanes are one ymm register here.
//
// Why: at the baseline ISA GCC vectorised the portable sums across the loop over i instead of
// along the lanes (strided loads and a shuffle per element), and the per-channel passes of the
// DCGAN's (64, 32, 14, 14) backward ran slower than PyTorch's. The same lanes, the same order of
// additions, and no fused multiply-add (each product rounded, then added, as the portable code
// does): the same bits as the generic entry. GCC would contract a multiply and an add written
// with intrinsics into an FMA under -mfma, hence fp-contract off for this file.
//
// Compiled with -mavx2 -mfma (csrc/cpu/avx2/); reached only through batch_norm.cpp's table.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
#include <immintrin.h>

#include "cpu/batch_norm_kernels.h"

namespace fastconv {
namespace cpu {

namespace {

// The lanes of acc, plus tail[j] added to lane j (j < rest < 8), summed as the portable code does.
inline double lanes_sum(__m256 acc, const float* tail, int64_t rest) {
  alignas(32) float a[8];
  _mm256_store_ps(a, acc);
  for (int64_t j = 0; j < rest; ++j) a[j] += tail[j];
  return double((a[0] + a[1]) + (a[2] + a[3])) + double((a[4] + a[5]) + (a[6] + a[7]));
}

}  // namespace

double plane_sum_avx2(const float* v, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(v + i));
  return lanes_sum(acc, v + i, n - i);
}

double plane_sq_dev_avx2(const float* v, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(v + i), vm);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
  }
  float tail[8];
  for (int64_t j = 0; i + j < n; ++j) { const float d = v[i + j] - m; tail[j] = d * d; }
  return lanes_sum(acc, tail, n - i);
}

void plane_grad_sums_avx2(const float* dy, const float* x, int64_t n, float m, double* s_dy,
                          double* s_dyx) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(dy + i);
    a = _mm256_add_ps(a, g);
    b = _mm256_add_ps(b, _mm256_mul_ps(g, _mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
  }
  float tail[8];
  for (int64_t j = 0; i + j < n; ++j) tail[j] = dy[i + j] * (x[i + j] - m);
  *s_dy += lanes_sum(a, dy + i, n - i);
  *s_dyx += lanes_sum(b, tail, n - i);
}

void plane_affine_avx2(const float* x, float* y, int64_t n, float a, float b) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), va), vb));
  for (; i < n; ++i) y[i] = x[i] * a + b;
}

void plane_grad_avx2(const float* dy, const float* x, float* dx, int64_t n, float a, float bx,
                     float k) {
  const __m256 va = _mm256_set1_ps(a), vbx = _mm256_set1_ps(bx), vk = _mm256_set1_ps(k);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 lin = _mm256_add_ps(_mm256_mul_ps(vbx, _mm256_loadu_ps(x + i)), vk);
    _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_mul_ps(va, _mm256_loadu_ps(dy + i)), lin));
  }
  for (; i < n; ++i) dx[i] = a * dy[i] + (bx * x[i] + k);
}

}  // namespace cpu
}  // namespace fastconv
