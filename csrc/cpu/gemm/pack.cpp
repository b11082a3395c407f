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

// One B panel of `cols` <= NR columns. B is (K, N) row-major, or (N, K) with trans_b.
template <int NR>
void pack_b_panel(bool trans_b, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                  int cols, int nr_runtime, float* dst) {
  const int nr = NR > 0 ? NR : nr_runtime;
  if (!trans_b) {
    // op(B)[k][j] = B[k][j]: each k is a contiguous run of `cols` floats.
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j0;
      float* d = dst + k * nr;
      if (cols == nr) {
        for (int c = 0; c < nr; ++c) d[c] = src[c];
      } else {
        for (int c = 0; c < cols; ++c) d[c] = src[c];
        for (int c = cols; c < nr; ++c) d[c] = 0.0f;
      }
    }
    return;
  }
  // op(B)[k][j] = B[j][k]: read each stored row of B contiguously, write it down a column.
  for (int c = 0; c < cols; ++c) {
    const float* src = B + (j0 + c) * ldb + k0;
    for (int64_t k = 0; k < kc; ++k) dst[k * nr + c] = src[k];
  }
  if (cols < nr)
    for (int64_t k = 0; k < kc; ++k)
      for (int c = cols; c < nr; ++c) dst[k * nr + c] = 0.0f;
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
  for (int64_t p = 0; p * nr < nc; ++p) {
    const int cols = static_cast<int>(nc - p * nr < nr ? nc - p * nr : nr);
    pack_b_panel<NR>(trans_b, B, ldb, k0, kc, j0 + p * nr, cols, nr, dst + p * kc * nr);
  }
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
