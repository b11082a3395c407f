// Packing for the blocked sgemm: copies a block of op(A) or op(B) into the panel layout
// the micro-kernels read with unit stride (layouts in sgemm_kernels.h and sgemm.h).
//
//   A block (mc x kc) -> MR-row panels:     panel[k * MR + r] = op(A)[i0 + p*MR + r][k0 + k]
//   B block (kc x nc) -> NR-column panels:  panel[k * NR + c] = op(B)[k0 + k][j0 + p*NR + c]
//
// Rows of A past mc and columns of B past nc are written as zeros, so a micro-kernel always
// runs a full MR x NR tile and only its store is clipped. Each case is written for a
// compile-time tile width (MR = 6 or 12, NR = 8, 16 or 32: the kernels in the table) so the
// compiler unrolls and vectorises the copies; other widths take the same code at run time.
// Baseline ISA: this file is shared by every kernel.
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "cpu/gemm/sgemm.h"
#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {

namespace {

// One A panel of `rows` <= MR rows. A is (M, K) row-major, or (K, M) with trans_a.
template <int MR>
void pack_a_panel(bool trans_a, const float* A, int64_t lda, int64_t i0, int rows, int64_t k0,
                  int64_t kc, int mr_runtime, float* dst) {
  const int mr = MR > 0 ? MR : mr_runtime;
  if (trans_a) {
    // op(A)[i][k] = A[k][i]: each k is a contiguous run of `rows` floats.
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + (k0 + k) * lda + i0;
      float* d = dst + k * mr;
      if (rows == mr) {
        for (int r = 0; r < mr; ++r) d[r] = src[r];
      } else {
        for (int r = 0; r < rows; ++r) d[r] = src[r];
        for (int r = rows; r < mr; ++r) d[r] = 0.0f;
      }
    }
    return;
  }
  // op(A)[i][k] = A[i][k]: `rows` row streams, interleaved k by k.
  if (rows == mr && mr <= 32) {
    const float* src[MR > 0 ? MR : 32];
    for (int r = 0; r < mr; ++r) src[r] = A + (i0 + r) * lda + k0;
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < mr; ++r) dst[k * mr + r] = src[r][k];
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int r = 0; r < mr; ++r) dst[k * mr + r] = r < rows ? A[(i0 + r) * lda + k0 + k] : 0.0f;
}

// op(B)[k0 : k0+kc, j0 : j0+nc] of a stored B (K, N) into NR-column panels. Rows of B
// are read in groups of 8 (8 sequential streams), each group copied into every panel
// before the next: about twice as fast as one panel at a time down all kc rows.
template <int NR>
void pack_b_rows(const float* __restrict B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                 int64_t nc, int nr_runtime, float* __restrict dst) {
  const int nr = NR > 0 ? NR : nr_runtime;
  const int64_t full_panels = nc / nr;
  for (int64_t kb = 0; kb < kc; kb += 8) {
    const int64_t kb_end = kb + 8 < kc ? kb + 8 : kc;
    for (int64_t p = 0; p < full_panels; ++p) {
      const float* __restrict src = B + (k0 + kb) * ldb + j0 + p * nr;
      float* __restrict d = dst + p * kc * nr + kb * nr;
      for (int64_t k = 0; k < kb_end - kb; ++k)
        for (int c = 0; c < nr; ++c) d[k * nr + c] = src[k * ldb + c];
    }
  }
  const int cols = static_cast<int>(nc - full_panels * nr);
  if (cols == 0) return;
  float* __restrict d = dst + full_panels * kc * nr;
  for (int64_t k = 0; k < kc; ++k) {
    const float* __restrict src = B + (k0 + k) * ldb + j0 + full_panels * nr;
    for (int c = 0; c < cols; ++c) d[k * nr + c] = src[c];
    for (int c = cols; c < nr; ++c) d[k * nr + c] = 0.0f;
  }
}

// op(B)[k0 : k0+kc, j0 : j0+nc] of a stored B^T (N, K): each stored row of B^T is one
// column of op(B). On x86 (SSE is baseline) full panels go through 4 x 4 register
// transposes: 4 rows of B^T x 4 k in, 4 k x 4 columns of the panel out; the rest (and
// other CPUs) read a row of B^T contiguously and write it down the panel with stride nr.
template <int NR>
void pack_b_cols(const float* __restrict B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                 int64_t nc, int nr_runtime, float* __restrict dst) {
  const int nr = NR > 0 ? NR : nr_runtime;
  for (int64_t p = 0; p * nr < nc; ++p) {
    const int cols = static_cast<int>(nc - p * nr < nr ? nc - p * nr : nr);
    float* __restrict d = dst + p * kc * nr;
    const float* panel_src = B + (j0 + p * nr) * ldb + k0;  // row c of B^T: panel_src + c*ldb
    int64_t k_done = 0;
#if defined(__SSE2__)
    if (cols == nr && nr % 4 == 0) {
      k_done = kc / 4 * 4;
      for (int64_t k = 0; k < k_done; k += 4)
        for (int c = 0; c < nr; c += 4) {
          __m128 r0 = _mm_loadu_ps(panel_src + (c + 0) * ldb + k);
          __m128 r1 = _mm_loadu_ps(panel_src + (c + 1) * ldb + k);
          __m128 r2 = _mm_loadu_ps(panel_src + (c + 2) * ldb + k);
          __m128 r3 = _mm_loadu_ps(panel_src + (c + 3) * ldb + k);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // now r_i = op(B)[k + i][c .. c+3]
          _mm_storeu_ps(d + (k + 0) * nr + c, r0);
          _mm_storeu_ps(d + (k + 1) * nr + c, r1);
          _mm_storeu_ps(d + (k + 2) * nr + c, r2);
          _mm_storeu_ps(d + (k + 3) * nr + c, r3);
        }
    }
#endif
    for (int c = 0; c < cols; ++c) {
      const float* __restrict src = panel_src + c * ldb;
      for (int64_t k = k_done; k < kc; ++k) d[k * nr + c] = src[k];
    }
    for (int64_t k = 0; k < kc && cols < nr; ++k)
      for (int c = cols; c < nr; ++c) d[k * nr + c] = 0.0f;
  }
}

template <int MR>
void pack_a_block(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0,
                  int64_t kc, int mr, float* dst) {
  for (int64_t p = 0; p * mr < mc; ++p) {
    const int rows = static_cast<int>(mc - p * mr < mr ? mc - p * mr : mr);
    pack_a_panel<MR>(trans_a, A, lda, i0 + p * mr, rows, k0, kc, mr, dst + p * kc * mr);
  }
}

template <int NR>
void pack_b_block(bool trans_b, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                  int64_t nc, int nr, float* dst) {
  if (trans_b)
    pack_b_cols<NR>(B, ldb, k0, kc, j0, nc, nr, dst);
  else
    pack_b_rows<NR>(B, ldb, k0, kc, j0, nc, nr, dst);
}

}  // namespace

namespace gemm {

void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0,
            int64_t kc, int MR, float* dst) {
  switch (MR) {
    case 6: pack_a_block<6>(trans_a, A, lda, i0, mc, k0, kc, MR, dst); break;
    case 12: pack_a_block<12>(trans_a, A, lda, i0, mc, k0, kc, MR, dst); break;
    default: pack_a_block<0>(trans_a, A, lda, i0, mc, k0, kc, MR, dst); break;
  }
}

}  // namespace gemm

void sgemm_pack_b(bool trans_b, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t nr, float* dst) {
  const int w = static_cast<int>(nr);
  switch (w) {
    case 8: pack_b_block<8>(trans_b, B, ldb, k0, kc, j0, nc, w, dst); break;
    case 16: pack_b_block<16>(trans_b, B, ldb, k0, kc, j0, nc, w, dst); break;
    case 32: pack_b_block<32>(trans_b, B, ldb, k0, kc, j0, nc, w, dst); break;
    default: pack_b_block<0>(trans_b, B, ldb, k0, kc, j0, nc, w, dst); break;
  }
}

}  // namespace cpu
}  // namespace fastconv
