// sgemm micro-kernel, portable C++, 6 x 8 tile: the fallback for any CPU (baseline
// x86-64 = SSE2, aarch64 = NEON) and the shape of every other kernel written plainly.
//
// The tile C (6, 8) is a local array acc[6][8]; each step k adds the outer product of one
// column of the A panel (6 floats) and one row of the B panel (8 floats):
//     acc[r][c] += a[k*6 + r] * b[k*8 + c]
// All loop bounds are constants, so the compiler unrolls r and c and vectorises c: with
// 4-float SSE2/NEON vectors that is 12 vector accumulators + 2 B vectors + 1 broadcast,
// which fits the 16 xmm registers (32 on aarch64) without spilling.
//
// a_panel is (kc, 6) k-major, b_panel is (kc, 8) with rows b_stride apart (8 when packed),
// C (m, n) row-major with leading dimension ldc, m <= 6, n <= 8.
#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {
constexpr int MR = 6;
constexpr int NR = 8;
}  // namespace

void sgemm_generic_6x8(int64_t kc, const float* a_panel, const float* b_panel,
                       int64_t b_stride, float* C, int64_t ldc, int m, int n, float alpha,
                       float beta) {
  float acc[MR][NR] = {};
  const float* a = a_panel;
  const float* b = b_panel;
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < MR; ++r) {
      const float ar = a[r];
      for (int c = 0; c < NR; ++c) acc[r][c] += ar * b[c];
    }
    a += MR;
    b += b_stride;
  }
  if (m == MR && n == NR) {
    for (int r = 0; r < MR; ++r) {
      float* crow = C + r * ldc;
      if (beta == 0.0f) {
        for (int c = 0; c < NR; ++c) crow[c] = alpha * acc[r][c];
      } else {
        for (int c = 0; c < NR; ++c) crow[c] = alpha * acc[r][c] + beta * crow[c];
      }
    }
    return;
  }
  store_edge_tile(&acc[0][0], NR, C, ldc, m, n, alpha, beta);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
