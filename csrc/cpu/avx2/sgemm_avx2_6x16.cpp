// sgemm micro-kernel, AVX2 + FMA, 6 x 16 tile (BLIS's Haswell/Zen shape).
//
// The tile C (6, 16) lives in 12 ymm accumulators, acc[r][0..1] for row r (two vectors of
// 8 floats). Each step k loads one row of the B panel (16 floats, 2 ymm), broadcasts the
// 6 elements of one column of the A panel, and does 12 FMAs:
//     acc[r][v] += broadcast(a[k*6 + r]) * b[k*b_stride + 8v .. 8v+7]
// 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers. 12 FMAs hide
// the FMA latency (4-5 cycles at 2 FMAs per cycle needs 8-10 independent chains).
//
// Edge tiles: the loop is a template over the rows (1..6) and vectors (1..2) it computes,
// so an edge tile of m rows and n columns runs only ceil(n/8) x m of the 12 FMAs (conv2d's
// M = 16 or 32 output channels leave 4- and 2-row tiles), and partial vectors are written
// with AVX2 masked loads/stores: C outside the m x n tile is never touched.
//
// a_panel is (kc, 6) k-major, b_panel is (kc, 16) with rows b_stride apart (16 when packed),
// C (m, n) is row-major with leading dimension ldc, m <= 6, n <= 16. Compiled with -mavx2
// -mfma (csrc/cpu/avx2/); reached only through gemm/dispatch.cpp's table.
#include <immintrin.h>

#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {
constexpr int MR = 6;

// Lanes [0, cols) of a ymm, for masked loads and stores (cols in 1..7).
inline __m256i lane_mask(int cols) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The first ROWS rows and 8*VECS columns of the tile; stores the top-left m x n of it.
template <int ROWS, int VECS>
void tile_kernel(int64_t kc, const float* a, const float* b, int64_t b_stride, float* C,
                 int64_t ldc, int m, int n, float alpha, float beta) {
  __m256 acc[ROWS][VECS];
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) acc[r][v] = _mm256_setzero_ps();

  // Touch the C rows now so they are in cache when the tile is written back.
  if (beta != 0.0f) {
    for (int r = 0; r < m; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[VECS];
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
      for (int v = 0; v < VECS; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
    a += MR;
    b += b_stride;
  }

  // C = alpha * acc + beta * C (C not read when beta == 0), row by row, vector by vector.
  const __m256 valpha = _mm256_set1_ps(alpha);
  const __m256 vbeta = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < ROWS; ++r) {
    if (r >= m) break;
    float* c = C + r * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < VECS; ++v) {
      const int cols = n - 8 * v;
      __m256 out = _mm256_mul_ps(acc[r][v], valpha);
      if (cols >= 8) {
        if (beta != 0.0f) out = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c + 8 * v), out);
        _mm256_storeu_ps(c + 8 * v, out);
      } else if (cols > 0) {
        const __m256i mask = lane_mask(cols);
        if (beta != 0.0f) out = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(c + 8 * v, mask), out);
        _mm256_maskstore_ps(c + 8 * v, mask, out);
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
    default: tile_kernel<6, VECS>(kc, a, b, b_stride, C, ldc, m, n, alpha, beta); break;
  }
}
}  // namespace

void sgemm_avx2_6x16(int64_t kc, const float* a_panel, const float* b_panel,
                     int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                     float beta) {
  if (m == MR && n > 8)  // the common, full-width case first
    tile_kernel<6, 2>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
  else if (n > 8)
    rows_dispatch<2>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
  else
    rows_dispatch<1>(kc, a_panel, b_panel, b_stride, C, ldc, m, n, alpha, beta);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
