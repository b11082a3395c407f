// Winograd F(2x2, 3x3) convolution on the CPU (conv2d_winograd_avx2.cpp, AVX2 machines only);
// conv2d.cpp decides when.
#pragma once
#include "ops.h"

namespace fastconv {
namespace cpu {

// Below this many input or output channels the transforms cost more than the products save.
constexpr int64_t kWinogradMinChannels = 16;

// 3x3 filter, stride 1, dilation 1, enough channels, an output of at least 2x2, and a CPU
// running the AVX2 kernels (conv2d.cpp).
bool winograd_fits(const Conv2dParams& p);

#ifdef FASTCONV_X86
// y (N, K, P, Q) = act(conv(x, w) + b) for a problem winograd_fits() accepts; any padding.
void conv2d_forward_winograd(const float* x, const float* w, const float* b, float* y,
                             const Conv2dParams& p, Activation act, float alpha = 0.f);
// dw (K, C, 3, 3) from dy (N, K, P, Q) and x (N, C, H, W), same problems.
void conv2d_backward_weight_winograd(const float* dy, const float* x, float* dw,
                                     const Conv2dParams& p);
#endif

// Which 3x3 path conv2d uses: 0 never Winograd, 1 where winograd_fits (the default),
// 2 for every 3x3 stride-1 problem (tests use it to reach small shapes).
int winograd_mode();
void set_winograd_mode(int mode);

}  // namespace cpu
}  // namespace fastconv
