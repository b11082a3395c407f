// Batch normalisation's per-plane loops by ISA, and the entry type of batch_norm.cpp's dispatch
// table. A plane is `n` contiguous values of one channel of one sample (inner = H*W of them).
//
// Every entry gives the same bits: the sums run in 8 float lanes, lane l adding elements l,
// l + 8, l + 16, ... in order (the n % 8 tail added to lanes 0, 1, ... after), then the lanes
// pairwise in float64; products and sums are rounded one by one (no fused multiply-add), so
// batch norm's results do not depend on the ISA any more than on the thread count.
#pragma once
#include <cstdint>

#include "cpu/isa.h"

namespace fastconv {
namespace cpu {

struct BatchNormKernels {
  Isa needs;
  double (*plane_sum)(const float* v, int64_t n);                   // sum v
  double (*plane_sq_dev)(const float* v, int64_t n, float m);       // sum (v - m)^2
  // *s_dy += sum dy, *s_dyx += sum dy (x - m)
  void (*plane_grad_sums)(const float* dy, const float* x, int64_t n, float m, double* s_dy,
                          double* s_dyx);
  // y = x a + b
  void (*plane_affine)(const float* x, float* y, int64_t n, float a, float b);
  // dx = a dy + (bx x + k)
  void (*plane_grad)(const float* dy, const float* x, float* dx, int64_t n, float a, float bx,
                     float k);
};

// The table's pick for selected_isa(), made once.
const BatchNormKernels& batch_norm_kernels();

#ifdef FASTCONV_X86
// avx2/batch_norm_avx2.cpp: 8 lanes in one register.
double plane_sum_avx2(const float* v, int64_t n);
double plane_sq_dev_avx2(const float* v, int64_t n, float m);
void plane_grad_sums_avx2(const float* dy, const float* x, int64_t n, float m, double* s_dy,
                          double* s_dyx);
void plane_affine_avx2(const float* x, float* y, int64_t n, float a, float b);
void plane_grad_avx2(const float* dy, const float* x, float* dx, int64_t n, float a, float bx,
                     float k);
#endif

}  // namespace cpu
}  // namespace fastconv
