// Dense (fully connected) layers and a general SGEMM on the GPU, on the tiled GEMM engine of
// gemm.cuh (shared-memory tiles, register tiles, split-K for long reductions).
//
// Shapes (row-major, PyTorch's layout for w):
//   x is (N, I)   w is (O, I)   b is (O)   y, dy are (N, O)
//   forward   y  (N, O) = act(x w^T + b)     GEMM M = N, N = O, Kd = I; bias, act in epilogue
//   backward  dx (N, I) = dy w               GEMM M = N, N = I, Kd = O
//             dw (O, I) = dy^T x             GEMM M = O, N = I, Kd = N (split-K for big N)
//             db (O)    = column sums of dy  the conv bias reduction with PQ = 1
//   sgemm     C (M, N) = op(A) (M, K) op(B) (K, N)
#include "cuda/gemm.cuh"

namespace fastconv {
namespace cuda {

namespace {
// The GEMMs of linear and sgemm, wired once for any engine (DeviceGemm on the GPU, the host
// emulation in tests/cuda_host_emulation.cu).
template <class Gemm>
void linear_forward_with(const Gemm& gemm, const float* x, const float* w, const float* b,
                         float* y, int64_t N, int64_t I, int64_t O, Activation act,
                         float alpha = 0.f) {
  // A = x (N, I): k contiguous.  B(k=i, n=o) = w[o*I + i]: k contiguous.
  gemm(N, O, I, MatrixLoader<true>{x, I}, MatrixLoader<true>{w, I},
       MatrixStore{y, O, b, int(act), alpha});
}

// dx and dw only; db is the bias reduction.
template <class Gemm>
void linear_backward_with(const Gemm& gemm, const float* dy, const float* x, const float* w,
                          float* dx, float* dw, int64_t N, int64_t I, int64_t O) {
  if (dx)  // A = dy (N, O): k contiguous.  B(k=o, n=i) = w[o*I + i]: n contiguous.
    gemm(N, I, O, MatrixLoader<true>{dy, O}, MatrixLoader<false>{w, I},
         MatrixStore{dx, I, nullptr, 0});
  if (dw)  // A(m=o, k=n) = dy[n*O + o]: m contiguous.  B(k=n, i) = x[n*I + i]: n contiguous.
    gemm(O, I, N, MatrixLoader<false>{dy, O}, MatrixLoader<false>{x, I},
         MatrixStore{dw, I, nullptr, 0});
}

template <class Gemm>
void sgemm_with(const Gemm& gemm, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc) {
  const MatrixStore store{C, ldc, nullptr, 0};
  if (!trans_a && !trans_b)
    gemm(M, N, K, MatrixLoader<true>{A, lda}, MatrixLoader<false>{B, ldb}, store);
  else if (!trans_a && trans_b)
    gemm(M, N, K, MatrixLoader<true>{A, lda}, MatrixLoader<true>{B, ldb}, store);
  else if (trans_a && !trans_b)
    gemm(M, N, K, MatrixLoader<false>{A, lda}, MatrixLoader<false>{B, ldb}, store);
  else
    gemm(M, N, K, MatrixLoader<false>{A, lda}, MatrixLoader<true>{B, ldb}, store);
}
}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N,
                    int64_t I, int64_t O, Activation act, float alpha) {
  linear_forward_with(DeviceGemm{}, x, w, b, y, N, I, O, act, alpha);
}

void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw,
                     float* db, int64_t N, int64_t I, int64_t O) {
  linear_backward_with(DeviceGemm{}, dy, x, w, dx, dw, N, I, O);
  if (db) conv2d_backward_bias(dy, db, N, O, 1);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
           int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  sgemm_with(DeviceGemm{}, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
}

}  // namespace cuda
}  // namespace fastconv
