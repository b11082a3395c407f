// sgemm micro-kernel, AVX-512F, 12 x 32 tile.
//
// This is BLIS's SKX/Zen4 sgemm shape (32 x 12 with 24 zmm accumulators) turned around for
// row-major C: BLIS vectorises along a column of C, we vectorise along a row, so our tile
// is 12 rows x 32 columns. The tile C (12, 32) lives in 24 zmm accumulators, acc[r][0..1]
// for row r (two vectors of 16 floats). Each step k loads one row of the B panel (32
// floats, 2 zmm), broadcasts the 12 elements of one column of the A panel, and does 24 FMAs:
//     acc[r][v] += broadcast(a[k*12 + r]) * b[k*b_stride + 16v .. 16v+15]
// 24 accumulators + 2 B vectors + broadcasts fit the 32 zmm registers; 24 independent FMA
// chains cover 2 FMA ports x 4 cycles of latency three times over.
//
// Same structure as avx2/sgemm_avx2_6x16.cpp: the loop is a template over the rows
// (1..12) and vectors (1..2) an edge tile needs, and partial vectors are written with
// AVX-512 masked loads/stores (mask = the low `cols` bits), so C outside the m x n tile is
// never touched. a_panel is (kc, 12) k-major, b_panel is (kc, 32) with rows b_stride apart
// (32 when packed), C (m, n) row-major with leading dimension ldc, m <= 12, n <= 32.
// Compiled with -mavx512f (dq, bw, vl: csrc/cpu/avx512/); reached only through
// gemm/dispatch.cpp's table, at the avx512 level (isa.h checks the CPU and the OS). NOT run on the development machine (no AVX-512 there): the tests exercise it
// only where the CPU supports it.
#include <immintrin.h>

#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {
constexpr int MR = 12;

// The first ROWS rows and 16*VECS columns of the tile; stores the top-left m x n of it.
template <int ROWS, int VECS>
void tile_kernel(int64_t kc, const float* a, const float* b, int64_t b_stride, float* C,
                 int64_t ldc, int m, int n, float alpha, float beta) {
  __m512 acc[ROWS][VECS];
#pragma GCC unroll 12
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) acc[r][v] = _mm512_setzero_ps();

  // Touch the C rows now so they are in cache when the tile is written back.
  if (beta != 0.0f) {
    for (int r = 0; r < m; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 16), _MM_HINT_T0);
    }
  }

#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[VECS];
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 12
    for (int r = 0; r < ROWS; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 2
      for (int v = 0; v < VECS; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
    a += MR;
    b += b_stride;
  }

  // C = alpha * acc + beta * C (C not read when beta == 0), row by row, vector by vector.
  const __m512 valpha = _mm512_set1_ps(alpha);
  const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int r = 0; r < ROWS; ++r) {
    if (r >= m) break;
    float* c = C + r * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) {
      const int cols = n - 16 * v;
      __m512 out = _mm512_mul_ps(acc[r][v], valpha);
      if (cols >= 16) {
        if (beta != 0.0f) out = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c + 16 * v), out);
        _mm512_storeu_ps(c + 16 * v, out);
      } else if (cols > 0) {
        const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);  // lanes [0, cols)
        if (beta != 0.0f)
          out = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask, c + 16 * v), out);
        _mm512_mask_storeu_ps(c + 16 * v, mask, out);
      }
    }
  }
}

template <int VECS>
void rows_dispatch(int64_t kc, const float* a, const float* b, int64_t b_stride, float* C,
                   int64_t ldc, int m, int n, float alpha, float beta) {
  switch (m) {
    case 1: tile_kernel<1, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 2: tile_kernel<2, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 3: tile_kernel<3, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 4: tile_kernel<4, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 5: tile_kernel<5, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 6: tile_kernel<6, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 7: tile_kernel<7, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 8: tile_kernel<8, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 9: tile_kernel<9, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 10: tile_kernel<10, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    case 11: tile_kernel<11, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
    default: tile_kernel<12, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
  }
}
}  // namespace

void sgemm_avx512_12x32(int64_t kc, const float* a_panel, const float* b_panel,
                        int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                        float beta) {
  if (m == MR && n > 16)  // the common, full-width case first
    tile_kernel<12, 2>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
  else if (n > 16)
    rows_dispatch<2>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
  else
    rows_dispatch<1>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
