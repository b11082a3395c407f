// Direct (no im2col, no GEMM) conv2d kernels, by ISA; conv2d.cpp decides when to use them.
#pragma once
#include "ops.h"

namespace fastconv {
namespace cpu {

// Where the direct forward wins over im2col + GEMM (measured on an AVX2 EPYC against the
// packed AVX2 GEMM): up to 128 output channels (with few, the GEMM's M is small and building and
// packing im2col costs more than the products; up to 128 the direct kernel's 12-accumulator
// block still runs faster than im2col + GEMM), at least 4 of them (a vector of 8 channels
// should not be mostly padding), and enough taps per output (C*R*S) that writing the output
// transposed, channel by channel, is cheap beside them.
inline bool direct_forward_fits(const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S;
  return p.K >= 4 && p.K <= 128 && CRS >= 32 && CRS <= 4096;
}

// Where the row-vectorised kernels (conv2d_rows_avx2.cpp) take over from the one above: fewer
// than 8 output channels (a vector of 8 channels would be mostly padding), stride 1 along the
// width (8 neighbouring outputs read 8 neighbouring inputs) and output rows at least 8 wide.
inline bool rows_fits(const Conv2dParams& p) {
  return p.K < 8 && p.stride_w == 1 && p.Q >= 8;
}

#ifdef FASTCONV_X86
// y (N, K, P, Q) = act(conv(x, w) + b), any K, stride, padding and dilation (AVX2+FMA).
void conv2d_forward_direct_avx2(const float* x, const float* w, const float* b, float* y,
                                const Conv2dParams& p, Activation act, float alpha = 0.f);
// dw (K, C, R, S) from dy (N, K, P, Q) and x (N, C, H, W), same shapes as the forward (AVX2+FMA).
void conv2d_backward_weight_direct_avx2(const float* dy, const float* x, float* dw,
                                        const Conv2dParams& p);
// The same two for problems rows_fits() accepts, vectorised along output rows (AVX2+FMA).
void conv2d_forward_rows_avx2(const float* x, const float* w, const float* b, float* y,
                              const Conv2dParams& p, Activation act, float alpha = 0.f);
void conv2d_backward_weight_rows_avx2(const float* dy, const float* x, float* dw,
                                      const Conv2dParams& p);
#endif

}  // namespace cpu
}  // namespace fastconv
