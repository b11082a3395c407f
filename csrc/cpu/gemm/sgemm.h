// fastconv's single-precision GEMM: the one matrix-multiply core under conv2d and linear.
//
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C          row-major
//
// op(A) is A (M, K) with leading dimension lda, or with trans_a the transpose of a stored
// (K, M) matrix; likewise op(B). beta == 0 means C is written without being read (it may
// hold garbage or NaN). Called inside an OpenMP parallel region it runs on the calling
// thread alone; called outside one it splits the work across the OpenMP threads.
//
// How it works (BLIS's five loops; details in sgemm.cpp): C is cut into NC-column blocks,
// K into KC-deep slices; each (KC x NC) block of op(B) is packed once into NR-column
// panels shared by all threads, each (MC x KC) block of op(A) into MR-row panels private
// to a thread, and a register-blocked MR x NR micro-kernel (AVX-512, AVX2+FMA or portable
// C++, picked once at run time, see dispatch.cpp) runs over the packed panels.
//
// Two generalised entries serve the ops above the GEMM:
//   * sgemm_ex: the plain GEMM plus an epilogue (a bias per row or per column, then an
//     activation) applied to each finished C tile while it is still in cache.
//   * sgemm_packed_b: op(B) never exists as a matrix; a callback packs each (kc x nc)
//     block of it straight into the micro-kernel's panel layout. conv2d forward uses it to
//     run W (K, C*R*S) x im2col(x) (C*R*S, P*Q) without materialising im2col:
//
//     // y_n is (K, P*Q), w is (K, C*R*S), x_n is (C, H, W); one image, stride 1, no pad.
//     SgemmPackB pack_im2col = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc,
//                                  int64_t nr, float* dst) {
//       for (int64_t p0 = 0; p0 < nc; p0 += nr)           // one NR-column panel at a time
//         for (int64_t k = 0; k < kc; ++k) {             // row k0+k of im2col is (c, r, s)
//           int64_t crs = k0 + k, c = crs / (R * S), r = crs / S % R, s = crs % S;
//           for (int64_t j = 0; j < nr; ++j) {            // column j0+p0+j of im2col is (p, q)
//             int64_t pq = j0 + p0 + j, p = pq / Q, q = pq % Q;
//             dst[(p0 / nr) * kc * nr + k * nr + j] =
//                 (p0 + j < nc) ? x_n[(c * H + p + r) * W + q + s] : 0.0f;   // zero-pad
//           }
//         }
//     };
//     SgemmEpilogue ep;  ep.row_bias = b;  ep.act = Activation::ReLU;
//     sgemm_packed_b(false, K, P * Q, C * R * S, 1.0f, w, C * R * S, pack_im2col,
//                    0.0f, y_n, P * Q, ep);
//
//   (A real packer hoists the index arithmetic out of the j loop; see sgemm_pack_b for
//   the layout it must produce.)
#pragma once
#include <cstdint>
#include <functional>

#include "ops.h"

namespace fastconv {
namespace cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// What to do to each element of C after the product is complete (after alpha and beta):
//   C[i][j] = act(C[i][j] + row_bias[i] + col_bias[j])
// row_bias (M) and col_bias (N) may each be null. conv2d forward uses row_bias (one bias
// per output channel); linear forward, y (N, O) = x w^T + b, uses col_bias.
struct SgemmEpilogue {
  const float* row_bias = nullptr;
  const float* col_bias = nullptr;
  Activation act = Activation::None;
  float alpha = 0.f;   // the activation's parameter (leaky relu's slope, elu's alpha)
};

// The plain GEMM with an epilogue.
void sgemm_ex(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, const SgemmEpilogue& epilogue);

// Packs the block op(B)[k0 : k0+kc, j0 : j0+nc] into ceil(nc / nr) panels laid one after
// the other in dst (64-byte aligned). Panel p holds columns j0 + p*nr ... j0 + p*nr + nr-1
// as kc rows of nr floats:
//   dst[p * kc * nr + k * nr + j] = op(B)[k0 + k][j0 + p*nr + j]
// with zeros for the columns past j0 + nc (the last panel's padding). The GEMM calls it
// from several threads at once for disjoint column ranges (j0 is then a multiple of nr),
// so it must be safe to call concurrently, and it must not throw (it runs inside an
// OpenMP region). Every element of op(B) is requested exactly once per GEMM, in blocks of
// kc <= KC (256) rows and nc <= NC (2048..4080) columns.
using SgemmPackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                      int64_t nr, float* dst)>;

// C (M, N) = alpha * op(A) * B + beta * C, then the epilogue, where B (K, N) is produced
// block by block by pack_b.
void sgemm_packed_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const SgemmPackB& pack_b, float beta, float* C, int64_t ldc,
                    const SgemmEpilogue& epilogue = SgemmEpilogue());

// The packer sgemm itself uses for a stored matrix B (K, N), or (N, K) with trans_b, in
// the layout described at SgemmPackB. A custom packer may call it for the blocks it can
// read straight from memory (e.g. a 1x1 convolution, where im2col(x) is x itself).
void sgemm_pack_b(bool trans_b, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t nr, float* dst);

}  // namespace cpu
}  // namespace fastconv
