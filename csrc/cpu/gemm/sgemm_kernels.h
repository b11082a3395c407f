// The inside of fastconv's GEMM: the micro-kernel contract, the dispatch table's entry
// type, the packers and the reference GEMM. Only the GEMM includes this file: csrc/cpu/gemm/
// and the sgemm_* micro-kernels of the ISA folders.
//
// Packed layouts (BLIS's):
//   A block (mc x kc) -> ceil(mc/MR) panels, panel i is kc columns of MR floats:
//       a_panel[k * MR + r] = op(A)[i*MR + r][k]             (rows past mc are zero)
//   B block (kc x nc) -> ceil(nc/NR) panels, panel j is kc rows of NR floats:
//       b_panel[k * NR + c] = op(B)[k][j*NR + c]             (columns past nc are zero)
// A micro-kernel then computes one MR x NR tile of C as kc rank-1 updates, each a column
// of the A panel (broadcast element by element) times a row of the B panel (vector loads),
// with the whole tile held in registers.
#pragma once
#include <cstdint>

#include "cpu/isa.h"

namespace fastconv {
namespace cpu {
namespace gemm {

// One MR x NR tile:  C (m, n) = alpha * a_panel (MR, kc) * b_panel (kc, NR) + beta * C,
// keeping only the top-left m x n of the product (m <= MR, n <= NR: edge tiles are the
// micro-kernel's job). C is row-major with leading dimension ldc; beta == 0: C is not read.
// Row k of the B panel starts at b_panel + k * b_stride: b_stride is NR for a packed panel,
// or ldb when the driver reads NR columns of a stored B (K, N) in place (small M, see
// sgemm.cpp). Neither panel needs more than 4-byte alignment.
using SgemmMicroKernel = void (*)(int64_t kc, const float* a_panel, const float* b_panel,
                                  int64_t b_stride, float* C, int64_t ldc, int m, int n,
                                  float alpha, float beta);

// One entry of the dispatch table: a micro-kernel with the blocking tuned for it.
//   MR x NR   the register tile
//   KC        depth of a packed slice: a B micro-panel (KC x NR) stays in L1
//   MC        rows of a packed A block (MC x KC), sized to stay in L2
//   NC        columns of a packed B block (KC x NC), sized to stay in L3
struct SgemmKernel {
  Isa needs;                       // the ISA level it is compiled for (isa.h)
  SgemmMicroKernel micro_kernel;
  int MR, NR;
  int64_t MC, KC, NC;
};

// The kernel the dispatch picked (dispatch.cpp): the first the selected ISA level may run.
const SgemmKernel& selected_kernel();

// The micro-kernels, one file each: csrc/cpu/avx512/, csrc/cpu/avx2/, csrc/cpu/gemm/ (generic).
#ifdef FASTCONV_X86
void sgemm_avx512_12x32(int64_t kc, const float* a_panel, const float* b_panel,
                        int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                        float beta);
void sgemm_avx2_6x16(int64_t kc, const float* a_panel, const float* b_panel,
                     int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                     float beta);
#endif
void sgemm_generic_6x8(int64_t kc, const float* a_panel, const float* b_panel,
                       int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                       float beta);

// Writes the top-left m x n of a full MR x NR product tile (row-major, leading dimension
// tile_ld) into C: C = alpha * tile + beta * C, C not read when beta == 0. The micro-kernels
// use it for edge tiles after storing their registers to a small buffer on the stack.
// static: each ISA file gets its own copy, compiled with its own flags (an inline function
// with external linkage could be merged with the AVX-512 file's copy and run on any CPU).
static inline void store_edge_tile(const float* tile, int tile_ld, float* C, int64_t ldc, int m,
                                   int n, float alpha, float beta) {
  for (int i = 0; i < m; ++i) {
    const float* t = tile + i * tile_ld;
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < n; ++j) c[j] = alpha * t[j];
    } else {
      for (int j = 0; j < n; ++j) c[j] = alpha * t[j] + beta * c[j];
    }
  }
}

// Packs op(A)[i0 : i0+mc, k0 : k0+kc] (A (M, K), or (K, M) with trans_a) into MR-row panels.
void pack_a(bool trans_a, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0,
            int64_t kc, int MR, float* dst);

// C (M, N) = alpha * op(A) op(B) + beta * C by three plain loops in double precision: the
// truth the blocked GEMM is tested against.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc);

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
