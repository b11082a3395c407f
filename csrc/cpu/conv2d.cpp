// conv2d on the CPU: im2col + GEMM over groups of images, groups spread over OpenMP threads.
//
//   x  is (N, C, H, W)    w  is (K, C, R, S) = a (K, CRS) matrix, CRS = C*R*S    b is (K)
//   y  is (N, K, P, Q)    dy is (N, K, P, Q),  PQ = P*Q
//
// Images are taken G at a time (a "group"). The group's im2col matrices sit side by side in one
// col_g (CRS, G*PQ), image g in columns g*PQ ..., so one GEMM covers the group:
//   forward          out_g (K, G*PQ)   = w (K, CRS) . col_g (CRS, G*PQ)
//                    y_n = act(out_g[:, g*PQ ...] + b)       the output pass, fused (vmath.h)
//   backward input   col_g (CRS, G*PQ) = w^T (CRS, K) . dy_g (K, G*PQ); col2im each image
//   backward weight  dw (K, CRS)      += dy_g (K, G*PQ) . col_g^T (G*PQ, CRS)
//                    (or, for K >= 32, its transpose dw^T += col_g . dy_g^T)
// where dy_g is the group's dy gathered from (G, K, PQ) into (K, G*PQ). A thread runs its
// group's GEMM on its own (sgemm is single-threaded inside a parallel region).
//
// Why groups: with a small output plane a per-image GEMM is thin. LeNet's C3 (PQ = 100) would
// run 64 GEMMs of 100 columns, C5 (PQ = 1) 64 matrix-vector products; a group makes the GEMM
// wide enough for the micro-kernel (target kGroupColumns columns) while col_g stays within
// kGroupColFloats (cache-sized). G = 1 where PQ alone is wide enough; then the GEMM writes y_n
// in place and the output pass runs over it, and dy_n needs no gather.
//
// Two shapes need no im2col at all (ATen does the same for the first):
//   pointwise     1x1 filter, stride 1, no padding: col_n is x_n (C, HW) itself (when G = 1).
//   whole image   the filter covers the unpadded image (R = H, S = W, P = Q = 1): col_n is x_n
//                 flattened, so the whole batch is ONE GEMM: y (N, K) = x (N, CRS) . w^T,
//                 dx (N, CRS) = dy (N, K) . w, dw (K, CRS) = dy^T (K, N) . x (N, CRS); each
//                 call sgemm outside a parallel region, which spreads it over the threads.
//
// Faster kernels where the ISA has them and the shape suits them (conv2d_kernels.h; the two
// dispatch tables below say which ISA has which, and which runs each pass): Winograd
// F(2x2, 3x3) for 3x3 layers with many channels, direct kernels vectorised over output
// channels (LeNet's C3, 4 to 128 channels) or along output rows (fewer than 8 channels,
// LeNet's C1), all in csrc/cpu/avx2/. Backward input with stride 1 is a forward convolution
// of dy with the flipped filter, so it takes the same kernels.
//
// Backward weight keeps one partial sum per thread, each over a contiguous range of
// groups, added in thread order at the end: a given thread count always gives the same bits.
// The ranges follow the threads the region actually got (parallel_team in common/parallel.h),
// which OMP_THREAD_LIMIT, OMP_DYNAMIC or an enclosing parallel region can make fewer than
// asked for.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "cpu/conv2d_kernels.h"
#include "cpu/gemm/sgemm.h"
#include "cpu/im2col.h"
#include "cpu/isa.h"
#include "cpu/vmath.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kGroupColumns = 512;          // aim for a GEMM at least this wide (G*PQ)
constexpr int64_t kGroupColFloats = 96 * 1024;  // col_g at most this big (384 KB), G > 1

bool is_pointwise(const Conv2dParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
}

// The filter covers exactly the unpadded image: im2col(x_n) is x_n read as a (CRS, 1) column.
bool is_whole_image(const Conv2dParams& p) {
  return p.R == p.H && p.S == p.W && p.P == 1 && p.Q == 1 && p.pad_top == 0 &&
         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0 && (p.R == 1 || p.dil_h == 1) &&
         (p.S == 1 || p.dil_w == 1);
}

// Images per GEMM: enough columns to feed the micro-kernel, col_g within cache, and at least
// one group per thread.
int64_t images_per_group(const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q;
  if (PQ >= kGroupColumns) return 1;
  int64_t g = (kGroupColumns + PQ - 1) / PQ;
  g = std::min(g, std::max<int64_t>(1, kGroupColFloats / (CRS * PQ)));
  const int64_t threads = std::max(1, omp_threads());
  g = std::min(g, std::max<int64_t>(1, (p.N + threads - 1) / threads));
  return std::max<int64_t>(1, g);
}

// Fills col_g (CRS, G*PQ) for images x_n0 ... x_n0+G-1, or returns x_n0 itself (pointwise, G = 1).
const float* group_col(const float* x, int64_t n0, int64_t G, const Conv2dParams& p, float* buf) {
  const int64_t PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  if (G == 1 && is_pointwise(p)) return x + n0 * CHW;
  for (int64_t g = 0; g < G; ++g) im2col(x + (n0 + g) * CHW, buf + g * PQ, p, G * PQ);
  return buf;
}

// Gathers dy_g (K, G*PQ) from dy (N, K, PQ) for images n0 ... n0+G-1, or returns dy_n0 (G = 1).
const float* group_dy(const float* dy, int64_t n0, int64_t G, const Conv2dParams& p, float* buf) {
  const int64_t PQ = p.P * p.Q, K = p.K;
  if (G == 1) return dy + n0 * K * PQ;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t g = 0; g < G; ++g)
      std::memcpy(buf + k * G * PQ + g * PQ, dy + ((n0 + g) * K + k) * PQ, sizeof(float) * PQ);
  return buf;
}

// The stride-1 backward input as a forward problem (see the dispatch table below): dy
// convolved with the flipped filter, padded so the output is (N, C, H, W) again. False where
// that needs a negative padding.
bool flipped_problem(const Conv2dParams& p, Conv2dParams* q_out) {
  if (p.stride_h != 1 || p.stride_w != 1) return false;
  Conv2dParams q = p;
  q.C = p.K; q.H = p.P; q.W = p.Q; q.K = p.C;
  q.pad_top = (p.R - 1) * p.dil_h - p.pad_top;
  q.pad_bottom = (p.R - 1) * p.dil_h - p.pad_bottom;
  q.pad_left = (p.S - 1) * p.dil_w - p.pad_left;
  q.pad_right = (p.S - 1) * p.dil_w - p.pad_right;
  if (q.pad_top < 0 || q.pad_bottom < 0 || q.pad_left < 0 || q.pad_right < 0) return false;
  q.P = conv_out_size(q.H, q.R, 1, q.pad_top, q.pad_bottom, q.dil_h);
  q.Q = conv_out_size(q.W, q.S, 1, q.pad_left, q.pad_right, q.dil_w);
  if (q.P != p.H || q.Q != p.W) return false;
  *q_out = q;
  return true;
}

// wf (C, K, R, S): w (K, C, R, S) with K and C swapped and each filter turned 180 degrees.
std::vector<float> flipped_filter(const float* w, const Conv2dParams& p) {
  const int64_t RS = p.R * p.S;
  std::vector<float> wf(size_t(p.C * p.K * RS));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t rs = 0; rs < RS; ++rs)
        wf[(c * p.K + k) * RS + (RS - 1 - rs)] = w[(k * p.C + c) * RS + rs];
  return wf;
}

// ---- Backward input with a stride, as forward problems: the sub-pixel decomposition --------
//
// With stride (sh, sw) and no dilation, dx row h meets dy rows p only through the taps
// r = h + pt - sh p, all of one residue a = (h + pt) mod sh. Writing h + pt = sh i + a, the taps
// are r = a + sh j and the rows p = i - j, j < R / sh; the same for columns. So
//   dx[n][c][sh i + a - pt][sw l + b - pl] = sum over k, j, m of
//       dy[n][k][i - j][l - m] w[k][c][a + sh j][b + sw m]
// and the dx pixels of one residue pair (a, b) are a stride-1 convolution of dy with the
// sub-filter w[:, :, a + sh j, b + sw m] turned 180 degrees and transposed (C out, K in, as in
// flipped_filter). The pairs are forward problems over the same dy, which the direct kernel
// runs in one pass over the images (Conv2dDirectPart: each image padded once, every part on
// it), writing straight into every sh-th row and sw-th column of dx: no im2col matrix, no
// col2im scatter-add. Only for filters whose size is a multiple of the
// stride (the DCGAN's 4x4 stride 2): every residue then has R / sh taps, so no product is
// wasted on a zero tap.
struct SubPixelPart {
  Conv2dParams q;   // dy (N, K, P, Q) -> (N, C, q.P, q.Q), filter (C, K, R/sh, S/sw), stride 1
  int64_t a, b;     // the residues
  int64_t i0, l0;   // output row o, column o2 is dx row sh (i0 + o) + a - pt, col sw (l0 + o2) + b - pl
};

inline int64_t floor_div(int64_t n, int64_t d) { return n >= 0 ? n / d : -((-n + d - 1) / d); }

// One dimension of a part: residue a of stride s, J = R / s taps, dx length n, padding pt
// before, dy length P. The dx indices i = i0 ... i0 + count - 1 (count 0: the residue has none);
// the forward problem reads dy padded by before, after. False where that padding would be
// negative (dy would have to be cropped).
struct SubPixelSpan { int64_t i0 = 0, count = 0, before = 0, after = 0; };
bool sub_pixel_span(int64_t a, int64_t s, int64_t J, int64_t n, int64_t pt, int64_t P, SubPixelSpan* span) {
  const int64_t i0 = -floor_div(a - pt, s), i1 = floor_div(n - 1 + pt - a, s);   // ceil, floor
  if (i1 < i0) { *span = SubPixelSpan(); return true; }
  span->i0 = i0;
  span->count = i1 - i0 + 1;
  span->before = J - 1 - i0;       // output o reads dy rows i0 + o - (J - 1) ... i0 + o
  span->after = i1 - (P - 1);
  return span->before >= 0 && span->after >= 0;
}

// The parts of p's backward input, or false where the decomposition does not apply.
bool sub_pixel_parts(const Conv2dParams& p, std::vector<SubPixelPart>* parts) {
  const int64_t sh = p.stride_h, sw = p.stride_w;
  if ((sh == 1 && sw == 1) || p.dil_h != 1 || p.dil_w != 1 || p.R % sh != 0 || p.S % sw != 0)
    return false;
  const int64_t Jh = p.R / sh, Jw = p.S / sw;
  parts->clear();
  for (int64_t a = 0; a < sh; ++a) {
    SubPixelSpan rows;
    if (!sub_pixel_span(a, sh, Jh, p.H, p.pad_top, p.P, &rows)) return false;
    for (int64_t b = 0; b < sw; ++b) {
      SubPixelSpan cols;
      if (!sub_pixel_span(b, sw, Jw, p.W, p.pad_left, p.Q, &cols)) return false;
      if (rows.count == 0 || cols.count == 0) continue;   // no dx pixel has these residues
      SubPixelPart part;
      Conv2dParams& q = part.q;
      q = p;
      q.C = p.K; q.H = p.P; q.W = p.Q; q.K = p.C; q.R = Jh; q.S = Jw;
      q.stride_h = q.stride_w = 1;
      q.pad_top = rows.before; q.pad_bottom = rows.after;
      q.pad_left = cols.before; q.pad_right = cols.after;
      q.P = rows.count; q.Q = cols.count;
      part.a = a; part.b = b; part.i0 = rows.i0; part.l0 = cols.i0;
      parts->push_back(part);
    }
  }
  return !parts->empty();
}

// wf (C, K, R/sh, S/sw): the sub-filter of residues (a, b), turned and transposed.
std::vector<float> sub_pixel_filter(const float* w, const Conv2dParams& p, int64_t a, int64_t b) {
  const int64_t Jh = p.R / p.stride_h, Jw = p.S / p.stride_w;
  std::vector<float> wf(size_t(p.C * p.K * Jh * Jw));
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t j = 0; j < Jh; ++j)
        for (int64_t m = 0; m < Jw; ++m)
          wf[((c * p.K + k) * Jh + (Jh - 1 - j)) * Jw + (Jw - 1 - m)] =
              w[((k * p.C + c) * p.R + a + p.stride_h * j) * p.S + b + p.stride_w * m];
  return wf;
}

}  // namespace

// ---- The ISA dispatch table: which fast algorithms each ISA level has (isa.h) -------------
namespace {

// Entries in priority order: {needs, winograd, rows, direct, direct_parts}, each algorithm a
// {forward, backward weight} pair. The AVX2 entry serves the avx512 level too (no AVX-512 conv kernels).
const Conv2dKernels kConv2dKernels[] = {
#ifdef FASTCONV_X86
    {Isa::Avx2,
     {conv2d_forward_winograd_f2x2_3x3_avx2, conv2d_backward_weight_winograd_f2x2_3x3_avx2},
     {conv2d_forward_rows_avx2, conv2d_backward_weight_rows_avx2},
     {conv2d_forward_direct_avx2, conv2d_backward_weight_direct_avx2},
     conv2d_forward_direct_parts_avx2},
#endif
    {Isa::Generic, {}, {}, {}, nullptr},   // im2col + GEMM (and the whole-image GEMM) for every pass
};

std::atomic<int> g_winograd_mode{1};

}  // namespace

const Conv2dKernels& conv2d_kernels() {
  static const Conv2dKernels& chosen = first_runnable(kConv2dKernels);  // thread-safe, once
  return chosen;
}

int winograd_mode() { return g_winograd_mode.load(std::memory_order_relaxed); }
void set_winograd_mode(int mode) { g_winograd_mode.store(mode < 0 ? 0 : (mode > 2 ? 2 : mode)); }

bool winograd_fits(const Conv2dParams& p) {
  const int mode = winograd_mode();
  if (mode == 0) return false;
  const int64_t min_channels = mode == 2 ? 1 : kWinogradMinChannels;
  const int64_t min_side = mode == 2 ? 2 : kWinogradMinOutputSide;
  return p.R == 3 && p.S == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1 && p.C >= min_channels && p.K >= min_channels && p.P >= min_side &&
         p.Q >= min_side;
}

// ---- The shape dispatch table: which kernel runs each pass of a problem, first match wins ---
//
//   pass             whole image   Winograd        rows (K < 8)     direct (channels)   else
//   forward          one GEMM      3x3, C,K >= 16  stride_w 1       K 4..128            im2col
//   backward input   one GEMM      flipped 3x3     flipped, 2..7 C  flipped, C >= 16    (*)
//   backward weight  one GEMM      3x3, C,K >= 16  stride_w 1       K 4..128            im2col
//
// Winograd also needs an output of at least kWinogradMinOutputSide (10) a side.
// "flipped": backward input with stride 1 is itself a forward convolution (flipped_problem),
// so it takes the forward kernels. (*) With stride 1 and K < 8 <= C, the flipped problem's
// forward im2col + GEMM ("flipped_im2col_gemm", no ISA kernel needed); with a stride, sh*sw
// forward problems (sub_pixel_parts) where the filter size is a multiple of the stride and every
// part runs on the direct kernel ("sub_pixel"); else im2col + GEMM + col2im. A column applies only where the selected ISA's entry of
// kConv2dKernels has that algorithm (none at the generic level: FASTCONV_ISA=generic turns
// them all off, which the tests use).
namespace {

enum class Algo { WholeImage, Winograd, Rows, Direct, SubPixel, FlippedIm2col, Im2col };

Algo forward_algo(const Conv2dParams& p) {
  if (is_whole_image(p)) return Algo::WholeImage;
  const Conv2dKernels& k = conv2d_kernels();
  if (k.winograd && winograd_fits(p)) return Algo::Winograd;   // 3x3, stride 1: 2.25x fewer products
  if (k.rows && rows_fits(p)) return Algo::Rows;
  if (k.direct && direct_forward_fits(p)) return Algo::Direct;
  return Algo::Im2col;
}

// q: the flipped problem, where the answer is one of the forward kernels; parts: the
// sub-pixel parts, where the answer is SubPixel.
Algo backward_input_algo(const Conv2dParams& p, Conv2dParams* q, std::vector<SubPixelPart>* parts) {
  if (is_whole_image(p)) return Algo::WholeImage;
  if (!flipped_problem(p, q)) {
    if (!conv2d_kernels().direct_parts || !sub_pixel_parts(p, parts)) return Algo::Im2col;
    for (const SubPixelPart& part : *parts)
      if (forward_algo(part.q) != Algo::Direct) return Algo::Im2col;
    return Algo::SubPixel;
  }
  const Conv2dKernels& k = conv2d_kernels();
  if (k.winograd && winograd_fits(*q)) return Algo::Winograd;
  // Not for one input channel (C = 1, the flipped K' = 1): the row kernel then keeps only 4
  // accumulators, FMA-latency-bound, and im2col + GEMM + col2im was faster on the small
  // VGG's first layer (1 -> 32, 3x3 "same").
  if (k.rows && rows_fits(*q) && q->K >= 2) return Algo::Rows;
  // C >= 16 for the channel-vectorised kernel: with 8 <= C < 16 most of the second vector
  // of channels is padding, and im2col + GEMM + col2im is faster.
  if (k.direct && q->K >= 16 && direct_forward_fits(*q)) return Algo::Direct;
  // Few output channels (K < 8) and many input channels: the backward GEMM below would be
  // w^T (CRS, K) . dy (K, G*PQ), K deep (rank 1 for the autoencoder's 16 -> 1 output layer), and
  // col2im adds every entry back; the flipped problem's forward im2col + GEMM is K*R*S deep and
  // writes dx directly.
  if (p.K < 8 && p.C >= 8) return Algo::FlippedIm2col;
  return Algo::Im2col;
}

Algo backward_weight_algo(const Conv2dParams& p) {
  if (is_whole_image(p)) return Algo::WholeImage;
  const Conv2dKernels& k = conv2d_kernels();
  if (k.winograd && winograd_fits(p)) return Algo::Winograd;
  if (k.rows && rows_fits(p)) return Algo::Rows;
  if (k.direct && direct_forward_fits(p)) return Algo::Direct;
  return Algo::Im2col;
}

// The kernels of an algorithm forward_algo or backward_weight_algo picked (not WholeImage or
// Im2col, which conv2d.cpp runs itself).
const Conv2dAlgorithmKernels& kernels_of(Algo a) {
  const Conv2dKernels& k = conv2d_kernels();
  return a == Algo::Winograd ? k.winograd : (a == Algo::Rows ? k.rows : k.direct);
}

const char* algo_name(Algo a) {
  switch (a) {
    case Algo::WholeImage: return "whole_image_gemm";
    case Algo::Winograd: return "winograd";
    case Algo::Rows: return "direct_rows";
    case Algo::Direct: return "direct_channels";
    case Algo::SubPixel: return "sub_pixel";
    case Algo::FlippedIm2col: return "flipped_im2col_gemm";
    default: return "im2col_gemm";
  }
}

// im2col + GEMM over groups of images (the file's opening comment): y = act(w . col + b).
void forward_im2col(const float* x, const float* w, const float* b, float* y, const Conv2dParams& p,
                    Activation act, float alpha) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, K = p.K;
  const ActivationKernel out_pass = activation_kernel(vec_math(), act, alpha);   // y = act(out + b[k])
  const int64_t G = images_per_group(p), groups = (p.N + G - 1) / G;
  ParallelErrors errors;                            // a workspace may fail to allocate
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (groups > 1)
  for (int64_t grp = 0; grp < groups; ++grp) errors.run([&] {
    const int64_t n0 = grp * G, Gn = std::min(G, p.N - n0);     // this group: images n0 ... n0+Gn-1
    const float* col = group_col(x, n0, Gn, p, thread_workspace(0, CRS * Gn * PQ));  // (CRS, Gn*PQ)
    if (Gn == 1) {                                  // y_n (K, PQ) straight from the GEMM
      float* yn = y + n0 * K * PQ;
      sgemm(false, false, K, PQ, CRS, 1.f, w, CRS, col, PQ, 0.f, yn, PQ);
      if (b || act != Activation::None)
        for (int64_t k = 0; k < K; ++k) out_pass(yn + k * PQ, b ? b[k] : 0.f, yn + k * PQ, PQ);
      return;
    }
    float* out = thread_workspace(1, K * Gn * PQ);  // (K, Gn*PQ)
    sgemm(false, false, K, Gn * PQ, CRS, 1.f, w, CRS, col, Gn * PQ, 0.f, out, Gn * PQ);
    for (int64_t g = 0; g < Gn; ++g)
      for (int64_t k = 0; k < K; ++k)
        out_pass(out + k * Gn * PQ + g * PQ, b ? b[k] : 0.f, y + ((n0 + g) * K + k) * PQ, PQ);
  });
  errors.rethrow();
}

}  // namespace

const char* conv2d_algorithm(int pass, const Conv2dParams& p) {
  Conv2dParams q;
  std::vector<SubPixelPart> parts;
  if (pass == 0) return algo_name(forward_algo(p));
  if (pass == 1) return algo_name(backward_input_algo(p, &q, &parts));
  return algo_name(backward_weight_algo(p));
}

void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, Activation act, float alpha) {
  const int64_t CRS = p.C * p.R * p.S, K = p.K;
  const ActivationKernel out_pass = activation_kernel(vec_math(), act, alpha);   // y = act(out + b[k])

  const Algo algo = forward_algo(p);
  switch (algo) {
    case Algo::WholeImage: {                       // y (N, K) = x (N, CRS) . w^T (CRS, K)
      sgemm(false, true, p.N, K, CRS, 1.f, x, CRS, w, CRS, 0.f, y, K);
      if (!b && act == Activation::None) return;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (p.N * K > (1 << 14))
      for (int64_t n = 0; n < p.N; ++n) {
        float* yn = y + n * K;                     // (K)
        if (b) for (int64_t k = 0; k < K; ++k) yn[k] += b[k];
        if (act != Activation::None) out_pass(yn, 0.f, yn, K);
      }
      return;
    }
    case Algo::Winograd:
    case Algo::Rows:
    case Algo::Direct: kernels_of(algo).forward(x, w, b, y, p, act, alpha); return;
    case Algo::SubPixel:                           // (backward input only)
    case Algo::FlippedIm2col:
    case Algo::Im2col: break;                      // im2col + GEMM, below
  }

  forward_im2col(x, w, b, y, p, act, alpha);
}

void conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W, K = p.K;

  Conv2dParams q;                                  // the flipped problem (flipped_problem)
  std::vector<SubPixelPart> parts;                 // or the sub-pixel parts (sub_pixel_parts)
  const Algo algo = backward_input_algo(p, &q, &parts);
  if (algo == Algo::WholeImage) {                  // dx (N, CRS) = dy (N, K) . w (K, CRS)
    sgemm(false, false, p.N, CRS, K, 1.f, dy, K, w, CRS, 0.f, dx, CRS);
    return;
  }
  if (algo == Algo::SubPixel) {                    // every dx pixel is written by one part
    // dy padded by the most any part needs on each side, (Hq, Wq) a plane; each part reads its
    // own window of that (only inside it: the rows o ... o + R/sh - 1 of its output row o).
    int64_t top = 0, left = 0, bottom = 0, right = 0;
    for (const SubPixelPart& part : parts) {
      top = std::max(top, part.q.pad_top); bottom = std::max(bottom, part.q.pad_bottom);
      left = std::max(left, part.q.pad_left); right = std::max(right, part.q.pad_right);
    }
    Conv2dParams shared = parts[0].q;              // dy (N, K, P, Q) and the sub-filters' shape
    shared.pad_top = top; shared.pad_bottom = bottom; shared.pad_left = left; shared.pad_right = right;
    const int64_t Wq = p.Q + left + right;
    std::vector<std::vector<float>> filters;       // each (C, K, R/sh, S/sw)
    std::vector<Conv2dDirectPart> direct;
    filters.reserve(parts.size());
    for (const SubPixelPart& part : parts) {
      filters.push_back(sub_pixel_filter(w, p, part.a, part.b));
      const int64_t h0 = p.stride_h * part.i0 + part.a - p.pad_top;   // dx row of output row 0
      const int64_t w0 = p.stride_w * part.l0 + part.b - p.pad_left;  // dx column of column 0
      direct.push_back({filters.back().data(),
                        (top - part.q.pad_top) * Wq + (left - part.q.pad_left),
                        part.q.P, part.q.Q, dx + h0 * p.W + w0});
    }
    const Conv2dOutputStrides dx_every_stride{CHW, p.H * p.W, p.stride_h * p.W, p.stride_w};
    conv2d_kernels().direct_parts(dy, shared, direct.data(), int64_t(direct.size()), dx_every_stride);
    return;
  }
  if (algo != Algo::Im2col) {                      // a forward of dy with the flipped filter
    const std::vector<float> wf = flipped_filter(w, p);    // (C, K, R, S)
    if (algo == Algo::FlippedIm2col) forward_im2col(dy, wf.data(), nullptr, dx, q, Activation::None, 0.f);
    else kernels_of(algo).forward(dy, wf.data(), nullptr, dx, q, Activation::None, 0.f);
    return;
  }

  const int64_t G = images_per_group(p), groups = (p.N + G - 1) / G;
  const bool pointwise = is_pointwise(p);
  ParallelErrors errors;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (groups > 1)
  for (int64_t grp = 0; grp < groups; ++grp) errors.run([&] {
    const int64_t n0 = grp * G, Gn = std::min(G, p.N - n0);
    const float* dyg = group_dy(dy, n0, Gn, p, thread_workspace(2, K * Gn * PQ));  // (K, Gn*PQ)
    if (Gn == 1 && pointwise) {                     // dx_n (C, HW) = w^T (C, K) . dy_n (K, HW)
      sgemm(true, false, CRS, PQ, K, 1.f, w, CRS, dyg, PQ, 0.f, dx + n0 * CHW, PQ);
      return;
    }
    float* col = thread_workspace(0, CRS * Gn * PQ);  // (CRS, Gn*PQ)
    sgemm(true, false, CRS, Gn * PQ, K, 1.f, w, CRS, dyg, Gn * PQ, 0.f, col, Gn * PQ);
    for (int64_t g = 0; g < Gn; ++g) col2im(col + g * PQ, dx + (n0 + g) * CHW, p, Gn * PQ);
  });
  errors.rethrow();
}

void conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, K = p.K, KCRS = K * CRS;

  const Algo algo = backward_weight_algo(p);
  switch (algo) {
    case Algo::WholeImage:                         // dw (K, CRS) = dy^T (K, N) . x (N, CRS)
      sgemm(true, false, K, CRS, p.N, 1.f, dy, K, x, CRS, 0.f, dw, CRS);
      return;
    case Algo::Winograd:
    case Algo::Rows:
    case Algo::Direct: kernels_of(algo).backward_weight(dy, x, dw, p); return;
    case Algo::SubPixel:                           // (backward input only)
    case Algo::FlippedIm2col:
    case Algo::Im2col: break;                      // im2col + GEMM, below
  }

  const int64_t G = images_per_group(p), groups = (p.N + G - 1) / G;
  const int max_nt = static_cast<int>(std::min<int64_t>(omp_threads(), groups));
  // Thread t of the nt that run (nt <= max_nt: parallel_team) sums groups
  // [groups*t/nt, groups*(t+1)/nt) into its own partial, in one of two orientations:
  //   K >= 32:  dw^T (CRS, K) += col_g (CRS, G*PQ) . dy_g^T (G*PQ, K)
  //             the GEMM's M is the long side (CRS), its A the im2col matrix, packed as stored;
  //             dy_g, the small operand, is the one read transposed.
  //   K < 32:   dw (K, CRS) += dy_g (K, G*PQ) . col_g^T (G*PQ, CRS)
  //             a narrow N = K would leave the micro-kernel's 16 or 32 columns mostly empty
  //             (LeNet's C1, K = 6, was slower the other way).
  const bool transposed = K >= 32;
  std::vector<float> partial(size_t(max_nt) * KCRS);
  const int team = parallel_team(max_nt, [&](int t, int nt) {
    float* acc = partial.data() + size_t(t) * KCRS;   // (CRS, K) or (K, CRS)
    std::memset(acc, 0, sizeof(float) * KCRS);
    for (int64_t grp = groups * t / nt; grp < groups * (t + 1) / nt; ++grp) {
      const int64_t n0 = grp * G, Gn = std::min(G, p.N - n0);
      const float* dyg = group_dy(dy, n0, Gn, p, thread_workspace(2, K * Gn * PQ));     // (K, Gn*PQ)
      const float* col = group_col(x, n0, Gn, p, thread_workspace(0, CRS * Gn * PQ));   // (CRS, Gn*PQ)
      if (transposed) sgemm(false, true, CRS, K, Gn * PQ, 1.f, col, Gn * PQ, dyg, Gn * PQ, 1.f, acc, K);
      else sgemm(false, true, K, CRS, Gn * PQ, 1.f, dyg, Gn * PQ, col, Gn * PQ, 1.f, acc, CRS);
    }
  });
  // dw (K, CRS) = the partials summed in thread order (transposed back where they are dw^T).
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < CRS; ++i) {
      const size_t at = transposed ? size_t(i * K + k) : size_t(k * CRS + i);
      float sum = partial[at];
      for (int t = 1; t < team; ++t) sum += partial[size_t(t) * KCRS + at];
      dw[k * CRS + i] = sum;
    }
}

void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t PQ) {
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (K * N * PQ > (1 << 15))
  for (int64_t k = 0; k < K; ++k) {
    double s = 0.0;  // a double accumulator: PQ*N terms can be many
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + (n * K + k) * PQ;
      float t = 0.f;
      for (int64_t i = 0; i < PQ; ++i) t += row[i];
      s += t;
    }
    db[k] = static_cast<float>(s);
  }
}

}  // namespace cpu
}  // namespace fastconv
