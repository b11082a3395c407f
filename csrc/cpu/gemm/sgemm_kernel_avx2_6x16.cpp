// sgemm micro-kernel, AVX2 + FMA, 6 x 16 tile (BLIS's Haswell/Zen shape).
//
// The tile C (6, 16) lives in 12 ymm accumulators, c[r][0..1] for row r (two vectors of 8
// floats). Each step k loads one row of the B panel (16 floats, 2 ymm), broadcasts the 6
// elements of one column of the A panel, and does 12 FMAs:
//     c[r][v] += broadcast(a[k*6 + r]) * b[k*16 + 8v .. 8v+7]
// 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers. 12 FMAs hide
// the FMA latency (4-5 cycles at 2 FMAs per cycle needs 8-10 independent chains).
//
// a_panel is (kc, 6) k-major, b_panel is (kc, 16) with rows b_stride apart (16 when packed),
// C (m, n) is row-major with leading dimension ldc, m <= 6, n <= 16. Compiled with -mavx2 -mfma; reached
// only through dispatch.cpp after the CPU check.
#include <immintrin.h>

#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {
constexpr int MR = 6;
constexpr int NR = 16;

// C row (16 floats) = alpha * acc + beta * C row; C not read when beta == 0.
inline void store_row(float* c, __m256 acc0, __m256 acc1, __m256 alpha, __m256 beta,
                      bool beta_zero) {
  acc0 = _mm256_mul_ps(acc0, alpha);
  acc1 = _mm256_mul_ps(acc1, alpha);
  if (!beta_zero) {
    acc0 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(c), acc0);
    acc1 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(c + 8), acc1);
  }
  _mm256_storeu_ps(c, acc0);
  _mm256_storeu_ps(c + 8, acc1);
}
}  // namespace

void sgemm_avx2_6x16(int64_t kc, const float* a_panel, const float* b_panel,
                     int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                     float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

  // Touch the C rows now so they are in cache when the tile is written back.
  if (beta != 0.0f) {
    for (int r = 0; r < m; ++r) _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
  }

  const float* a = a_panel;
  const float* b = b_panel;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 ar;
    ar = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(ar, b0, c00); c01 = _mm256_fmadd_ps(ar, b1, c01);
    ar = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(ar, b0, c10); c11 = _mm256_fmadd_ps(ar, b1, c11);
    ar = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(ar, b0, c20); c21 = _mm256_fmadd_ps(ar, b1, c21);
    ar = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(ar, b0, c30); c31 = _mm256_fmadd_ps(ar, b1, c31);
    ar = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(ar, b0, c40); c41 = _mm256_fmadd_ps(ar, b1, c41);
    ar = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(ar, b0, c50); c51 = _mm256_fmadd_ps(ar, b1, c51);
    a += MR;
    b += b_stride;
  }

  const __m256 valpha = _mm256_set1_ps(alpha);
  const __m256 vbeta = _mm256_set1_ps(beta);
  const bool beta_zero = (beta == 0.0f);
  if (m == MR && n == NR) {
    store_row(C + 0 * ldc, c00, c01, valpha, vbeta, beta_zero);
    store_row(C + 1 * ldc, c10, c11, valpha, vbeta, beta_zero);
    store_row(C + 2 * ldc, c20, c21, valpha, vbeta, beta_zero);
    store_row(C + 3 * ldc, c30, c31, valpha, vbeta, beta_zero);
    store_row(C + 4 * ldc, c40, c41, valpha, vbeta, beta_zero);
    store_row(C + 5 * ldc, c50, c51, valpha, vbeta, beta_zero);
    return;
  }
  // Edge tile: spill the registers, then write only the m x n corner.
  alignas(32) float tile[MR * NR];
  _mm256_store_ps(tile + 0 * NR, c00); _mm256_store_ps(tile + 0 * NR + 8, c01);
  _mm256_store_ps(tile + 1 * NR, c10); _mm256_store_ps(tile + 1 * NR + 8, c11);
  _mm256_store_ps(tile + 2 * NR, c20); _mm256_store_ps(tile + 2 * NR + 8, c21);
  _mm256_store_ps(tile + 3 * NR, c30); _mm256_store_ps(tile + 3 * NR + 8, c31);
  _mm256_store_ps(tile + 4 * NR, c40); _mm256_store_ps(tile + 4 * NR + 8, c41);
  _mm256_store_ps(tile + 5 * NR, c50); _mm256_store_ps(tile + 5 * NR + 8, c51);
  store_edge_tile(tile, NR, C, ldc, m, n, alpha, beta);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
