// conv2d's kernels besides im2col + GEMM, by ISA, and the entry type of conv2d.cpp's dispatch
// table: which of these algorithms each ISA level has. conv2d.cpp decides, per pass and
// shape, which one runs (the table in its comment); the shape rules each kernel wants are here.
//
//   algorithm   file                                         forward   backward weight
//   winograd    avx2/conv2d_winograd_f2x2_3x3_avx2.cpp       yes       yes
//   rows        avx2/conv2d_rows_avx2.cpp                    yes       yes
//   direct      avx2/conv2d_direct_avx2.cpp                  yes       yes   (and several problems, strided output)
// Backward input with stride 1 is a forward of dy with the flipped filter (conv2d.cpp), so it
// takes the forward kernels. The generic level has none of them: im2col + GEMM for everything.
#pragma once
#include "cpu/isa.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

// y (N, K, P, Q) = act(conv(x, w) + b), x (N, C, H, W), w (K, C, R, S), b (K) or null.
using Conv2dForwardFn = void (*)(const float* x, const float* w, const float* b, float* y,
                                 const Conv2dParams& p, Activation act, float alpha);
// dw (K, C, R, S) from dy (N, K, P, Q) and x (N, C, H, W).
using Conv2dBackwardWeightFn = void (*)(const float* dy, const float* x, float* dw,
                                        const Conv2dParams& p);

// Where a forward writes output pixel (n, k, p, q): y[n * n_ + k * k_ + p * row + q * col]
// (strides in floats; the dense (N, K, P, Q) is {K*P*Q, P*Q, Q, 1}). The sub-pixel backward
// input (conv2d.cpp) writes every sh-th row and sw-th column of dx with it.
struct Conv2dOutputStrides { int64_t n, k, row, col; };

// One of several stride-1 forward problems over the same input images x (N, C, H, W), padded
// as p says into (C, Hp, Wp): its filter w (K, C, R, S), the offset in the padded image where
// its window starts (it reads rows o ... o + R - 1 and columns o2 ... o2 + S - 1 of the window
// for output pixel (o, o2), all inside the padded image), its output size P x Q, and y, its
// output pixel (n, k, 0, 0), the rest at the shared output strides.
struct Conv2dDirectPart {
  const float* w;
  int64_t window;
  int64_t P, Q;
  float* y;
};
// The parts over x in one pass over the images (no bias, no activation); p gives x's geometry
// and padding, K, R, S (stride 1, dilation 1); its P, Q are not used.
using Conv2dForwardPartsFn = void (*)(const float* x, const Conv2dParams& p,
                                      const Conv2dDirectPart* parts, int64_t nparts,
                                      const Conv2dOutputStrides& out);

// One algorithm's kernels; both null where an ISA level does not have it.
struct Conv2dAlgorithmKernels {
  Conv2dForwardFn forward = nullptr;
  Conv2dBackwardWeightFn backward_weight = nullptr;
  explicit operator bool() const { return forward != nullptr; }
};

// An entry of conv2d.cpp's dispatch table: the fast algorithms an ISA level has.
struct Conv2dKernels {
  Isa needs;
  Conv2dAlgorithmKernels winograd, rows, direct;
  Conv2dForwardPartsFn direct_parts;   // the direct forward of several problems, any output strides
};

// The table's pick for selected_isa(), made once.
const Conv2dKernels& conv2d_kernels();

// ---- Where each kernel fits (the shapes; conv2d.cpp adds the ISA and the pass) -------------

// Where the direct forward wins over im2col + GEMM (measured on an AVX2 EPYC against the
// packed AVX2 GEMM): up to 128 output channels (with few, the GEMM's M is small and building and
// packing im2col costs more than the products; up to 128 the direct kernel's 12-accumulator
// block still runs faster than im2col + GEMM), at least 4 of them (a vector of 8 channels
// should not be mostly padding), and enough taps per output (C*R*S) that writing the output
// transposed, channel by channel, is cheap beside them: 32, or 16 with 16 to 32 channels (one
// chunk of 2 to 4 full vectors; the DCGAN's 1 -> 32 4x4 stride-2 layer), where the flat tap loop
// beat im2col + GEMM forward and backward weight, and lost with 8 or 64 channels.
inline bool direct_forward_fits(const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S;
  const bool enough_taps = CRS >= 32 || (CRS >= 16 && p.K >= 16 && p.K <= 32);
  return p.K >= 4 && p.K <= 128 && enough_taps && CRS <= 4096;
}

// Where the row-vectorised kernels take over from the one above: fewer than 8 output channels
// (a vector of 8 channels would be mostly padding), stride 1 along the width (8 neighbouring
// outputs read 8 neighbouring inputs) and output rows at least 8 wide.
inline bool rows_fits(const Conv2dParams& p) {
  return p.K < 8 && p.stride_w == 1 && p.Q >= 8;
}

// Below this many input or output channels the Winograd transforms cost more than the
// products save.
constexpr int64_t kWinogradMinChannels = 16;
// Nor does it pay on outputs smaller than this a side: F(2x2, 3x3) tiles a 7x7 output as 4x4
// tiles of 2x2 (64 outputs computed for 49), and small maps leave too few tiles a channel to
// amortise the transforms; the direct and im2col kernels were faster at every pass up to 9x9.
constexpr int64_t kWinogradMinOutputSide = 10;

// Which 3x3 path conv2d uses: 0 never Winograd, 1 where winograd_fits (the default),
// 2 for every 3x3 stride-1 problem (tests use it to reach small shapes).
int winograd_mode();
void set_winograd_mode(int mode);

// 3x3 filter, stride 1, dilation 1, an output of at least 2x2, and (winograd_mode() 1) at
// least kWinogradMinChannels channels in and out and an output of at least
// kWinogradMinOutputSide a side; false in mode 0.
bool winograd_fits(const Conv2dParams& p);

// ---- The AVX2+FMA kernels (csrc/cpu/avx2/); they run at the avx2 and avx512 levels ---------
#ifdef FASTCONV_X86
// Vectorised over 8 output channels; any K, stride, padding and dilation.
void conv2d_forward_direct_avx2(const float* x, const float* w, const float* b, float* y,
                                const Conv2dParams& p, Activation act, float alpha);
void conv2d_forward_direct_parts_avx2(const float* x, const Conv2dParams& p,
                                      const Conv2dDirectPart* parts, int64_t nparts,
                                      const Conv2dOutputStrides& out);
void conv2d_backward_weight_direct_avx2(const float* dy, const float* x, float* dw,
                                        const Conv2dParams& p);
// Vectorised along output rows, for problems rows_fits() accepts.
void conv2d_forward_rows_avx2(const float* x, const float* w, const float* b, float* y,
                              const Conv2dParams& p, Activation act, float alpha);
void conv2d_backward_weight_rows_avx2(const float* dy, const float* x, float* dw,
                                      const Conv2dParams& p);
// Winograd F(2x2, 3x3), for problems winograd_fits() accepts; any padding.
void conv2d_forward_winograd_f2x2_3x3_avx2(const float* x, const float* w, const float* b,
                                           float* y, const Conv2dParams& p, Activation act,
                                           float alpha);
void conv2d_backward_weight_winograd_f2x2_3x3_avx2(const float* dy, const float* x, float* dw,
                                                   const Conv2dParams& p);
#endif

}  // namespace cpu
}  // namespace fastconv
