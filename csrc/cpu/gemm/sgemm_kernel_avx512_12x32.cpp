// sgemm micro-kernel, AVX-512F, 12 x 32 tile.
//
// This is BLIS's SKX/Zen4 sgemm shape (32 x 12 with 24 zmm accumulators) turned around for
// row-major C: BLIS vectorises along a column of C, we vectorise along a row, so our tile
// is 12 rows x 32 columns. The tile C (12, 32) lives in 24 zmm accumulators, c[r][0..1]
// for row r (two vectors of 16 floats). Each step k loads one row of the B panel (32
// floats, 2 zmm), broadcasts the 12 elements of one column of the A panel, and does 24 FMAs:
//     c[r][v] += broadcast(a[k*12 + r]) * b[k*32 + 16v .. 16v+15]
// 24 accumulators + 2 B vectors + broadcasts fit the 32 zmm registers; 24 independent FMA
// chains cover 2 FMA ports x 4 cycles of latency three times over.
//
// Same structure as sgemm_kernel_avx2_6x16.cpp. a_panel is (kc, 12) k-major, b_panel is
// (kc, 32) with rows b_stride apart (32 when packed), C (m, n) row-major with leading dimension ldc,
// m <= 12, n <= 32. Compiled with -mavx512f (dq, bw, vl); reached only through dispatch.cpp
// after the CPU and OS checks. NOT run on the development machine (no AVX-512 there): the
// tests exercise it only where the CPU supports it.
#include <immintrin.h>

#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {
constexpr int MR = 12;
constexpr int NR = 32;
}  // namespace

void sgemm_avx512_12x32(int64_t kc, const float* a_panel, const float* b_panel,
                        int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                        float beta) {
  // acc[r][v]: row r, columns 16v .. 16v+15. The loops below have constant trip counts and
  // are fully unrolled, so every acc element is a register.
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    acc[r][0] = _mm512_setzero_ps();
    acc[r][1] = _mm512_setzero_ps();
  }

  if (beta != 0.0f) {
    for (int r = 0; r < m; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 16), _MM_HINT_T0);
    }
  }

  const float* a = a_panel;
  const float* b = b_panel;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
    a += MR;
    b += b_stride;
  }

  const __m512 valpha = _mm512_set1_ps(alpha);
  const __m512 vbeta = _mm512_set1_ps(beta);
  if (m == MR && n == NR) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      float* c = C + r * ldc;
      __m512 v0 = _mm512_mul_ps(acc[r][0], valpha);
      __m512 v1 = _mm512_mul_ps(acc[r][1], valpha);
      if (beta != 0.0f) {
        v0 = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c), v0);
        v1 = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c + 16), v1);
      }
      _mm512_storeu_ps(c, v0);
      _mm512_storeu_ps(c + 16, v1);
    }
    return;
  }
  // Edge tile: spill the registers, then write only the m x n corner.
  alignas(64) float tile[MR * NR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_store_ps(tile + r * NR, acc[r][0]);
    _mm512_store_ps(tile + r * NR + 16, acc[r][1]);
  }
  store_edge_tile(tile, NR, C, ldc, m, n, alpha, beta);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
