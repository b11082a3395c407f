// The 2x2 stride-2 max-pool training pair by ISA: the entry type of pool2d.cpp's dispatch
// table and the ISA-specific kernels it lists.
//
//   x is (N, C, H, W)   y, idx are (N, C, P, Q) with P = H / 2, Q = W / 2   dy, dx as y, x
//   idx holds each output's cell of its window (0..3, row-major), as pool2d.cpp describes.
//
// Every entry gives the same bits as pool2d.cpp's plain loops (the first maximum, a NaN
// winning); the generic entry is those loops with the window fixed at 2x2.
#pragma once
#include <cstdint>

#include "cpu/isa.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

using MaxPool2x2ForwardFn = void (*)(const float* x, float* y, uint8_t* idx, const Pool2dParams& p);
using MaxPool2x2BackwardFn = void (*)(const float* dy, const uint8_t* idx, float* dx,
                                      const Pool2dParams& p);

struct MaxPool2x2Kernels {
  Isa needs;
  MaxPool2x2ForwardFn forward_indices;
  MaxPool2x2BackwardFn backward_indices;
};

#ifdef FASTCONV_X86
// avx2/pool2d_max2x2_avx2.cpp: 8 outputs a step.
void max_pool2d_2x2_forward_indices_avx2(const float* x, float* y, uint8_t* idx, const Pool2dParams& p);
void max_pool2d_2x2_backward_indices_avx2(const float* dy, const uint8_t* idx, float* dx,
                                          const Pool2dParams& p);
#endif

}  // namespace cpu
}  // namespace fastconv
