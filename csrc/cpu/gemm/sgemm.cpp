// Placeholder SGEMM: a correct, cache-friendly loop nest (i, k, j with a vectorisable inner j
// loop). The blocked, packed, ISA-dispatched GEMM replaces it.
#include "cpu/gemm/sgemm.h"

#include <cstring>

#include "common/parallel.h"

namespace fastconv {
namespace cpu {

static void sgemm_rows(bool ta, bool tb, int64_t i0, int64_t i1, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc) {
  for (int64_t i = i0; i < i1; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) std::memset(c, 0, sizeof(float) * N);
    else if (beta != 1.f) for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    if (!tb) {
      for (int64_t k = 0; k < K; ++k) {
        float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
        const float* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    } else {
      for (int64_t j = 0; j < N; ++j) {
        const float* b = B + j * ldb;
        float s = 0.f;
        if (!ta) { const float* a = A + i * lda; for (int64_t k = 0; k < K; ++k) s += a[k] * b[k]; }
        else { for (int64_t k = 0; k < K; ++k) s += A[k * lda + i] * b[k]; }
        c[j] += alpha * s;
      }
    }
  }
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef _OPENMP
  if (!omp_in_parallel() && M * N * K > (1 << 16)) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) sgemm_rows(ta, tb, i, i + 1, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  sgemm_rows(ta, tb, 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* sgemm_isa() { return "generic"; }

}  // namespace cpu
}  // namespace fastconv
