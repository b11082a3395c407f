// fastconv's single-precision GEMM: the one matrix-multiply core under conv2d and linear.
//
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C          row-major
//
// op(A) is A (M, K) with leading dimension lda, or with trans_a the transpose of a stored
// (K, M) matrix; likewise op(B). beta == 0 means C is written without being read (it may
// hold garbage or NaN). Called inside an OpenMP parallel region it runs on the calling
// thread alone; called outside one it splits the work across the OpenMP threads.
#pragma once
#include <cstdint>

namespace fastconv {
namespace cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// Name of the micro-kernel the dispatch picked ("avx512", "avx2" or "generic").
const char* sgemm_isa();

}  // namespace cpu
}  // namespace fastconv
