// Building and checking op parameters from shapes, shared by both bindings.
//
// fastconv/functional.py checks arguments first and gives the friendliest messages; these
// checks are the last line before a kernel runs, so no call from Python, however it was made,
// reaches a kernel with sizes that would read or write out of bounds. They throw
// std::invalid_argument, which pybind11 raises as ValueError.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops.h"

namespace fastconv {

using Pair = std::array<int64_t, 2>;
using Pads = std::array<int64_t, 4>;  // top, left, bottom, right

// Largest element count of one array: kernels index with int64, but we keep every tensor
// below 2^31 elements so no 32-bit index anywhere (the CUDA grid, a BLAS) can wrap.
constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;

// Messages are built with std::string and std::to_string, not iostreams: a toolchain that
// links libstdc++ statically into the module (seen on the H100 image) crashed in
// ostream::operator<<(long) when the process's own libstdc++ had set up the locale.
inline void append_arg(std::string& out, const std::string& v) { out += v; }
inline void append_arg(std::string& out, const char* v) { out += v; }
inline void append_arg(std::string& out, char v) { out += v; }
template <class T>
inline void append_arg(std::string& out, const T& v) { out += std::to_string(v); }

// Concatenates its arguments (strings, characters and numbers) into one string.
template <class... Args>
inline std::string concat(const Args&... args) {
  std::string out;
  (append_arg(out, args), ...);
  return out;
}

template <class... Args>
[[noreturn]] inline void fail(const Args&... args) {
  throw std::invalid_argument(concat(args...));
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  if (s.size() == 1) out += ",";
  return out + ")";
}

inline int64_t checked_numel(const char* op, const char* name, const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) fail(op, ": ", name, " has a negative dimension ", shape_str(s));
    if (d != 0 && n > kMaxElements / d)
      fail(op, ": ", name, " of shape ", shape_str(s), " has more than 2^31-1 elements");
    n *= d;
  }
  return n;
}

// Stride, dilation and padding: each at most kMaxElements, so every sum and product of them
// with a dimension below fits int64 and every index the kernels form fits int32 on the GPU.
inline void check_geometry(const char* op, const Pair& stride, const Pads& pad, const Pair& dil) {
  for (int i = 0; i < 2; ++i) {
    if (stride[i] < 1 || stride[i] > kMaxElements)
      fail(op, ": stride must be between 1 and 2^31-1, got (", stride[0], ", ", stride[1], ")");
    if (dil[i] < 1 || dil[i] > kMaxElements)
      fail(op, ": dilation must be between 1 and 2^31-1, got (", dil[0], ", ", dil[1], ")");
  }
  for (int i = 0; i < 4; ++i)
    if (pad[i] < 0 || pad[i] > kMaxElements)
      fail(op, ": padding must be between 0 and 2^31-1, got (", pad[0], ", ", pad[1], ", ", pad[2],
           ", ", pad[3], ")");
}

// x (N, C, H, W), w (K, C, R, S) -> the parameters of y (N, K, P, Q).
//
// Every size a CPU or CUDA kernel derives from them is checked here to fit: the tensors, the
// dilated filter, the padded image that the direct kernels copy each input into (C, H + pads,
// W + pads), the output and the im2col workspace, each at most 2^31-1 elements. The checks
// run in an order that keeps every intermediate sum and product below 2^63 (check_geometry
// bounds stride, dilation and padding; checked_numel multiplies one factor at a time).
inline Conv2dParams make_conv_params(const char* op, const std::vector<int64_t>& x,
                                     const std::vector<int64_t>& w, const Pair& stride,
                                     const Pads& pad, const Pair& dil) {
  if (x.size() != 4) fail(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  if (w.size() != 4) fail(op, ": w must be 4-D (K, C, R, S), got shape ", shape_str(w));
  check_geometry(op, stride, pad, dil);
  checked_numel(op, "x", x);
  checked_numel(op, "w", w);
  if (x[0] < 1 || x[1] < 1 || x[2] < 1 || x[3] < 1) fail(op, ": x must have no empty dimension, got ", shape_str(x));
  if (w[0] < 1 || w[2] < 1 || w[3] < 1) fail(op, ": w must have no empty dimension, got ", shape_str(w));
  if (w[1] != x[1])
    fail(op, ": w has ", w[1], " input channels but x has ", x[1], " (x.shape=", shape_str(x),
         ", w.shape=", shape_str(w), ")");
  Conv2dParams p{};
  p.N = x[0]; p.C = x[1]; p.H = x[2]; p.W = x[3];
  p.K = w[0]; p.R = w[2]; p.S = w[3];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_top = pad[0]; p.pad_left = pad[1]; p.pad_bottom = pad[2]; p.pad_right = pad[3];
  p.dil_h = dil[0]; p.dil_w = dil[1];
  // Below 2^62 + 1 and 2^31 + 2^32: R, S and H, W are under 2^31, the rest bounded above.
  const int64_t eh = p.dil_h * (p.R - 1) + 1, ew = p.dil_w * (p.S - 1) + 1;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  if (eh > Hp || ew > Wp)
    fail(op, ": the kernel (", p.R, "x", p.S, ", dilated to ", eh, "x", ew,
         ") is larger than the padded input (", Hp, "x", Wp, "); x.shape=", shape_str(x),
         ", w.shape=", shape_str(w), ", dilation=(", p.dil_h, ", ", p.dil_w, ")");
  if (Hp > kMaxElements || Wp > kMaxElements ||
      (p.C * Hp > kMaxElements / Wp) /* C, Hp < 2^31: no overflow */)
    fail(op, ": padding (", p.pad_top, ", ", p.pad_left, ", ", p.pad_bottom, ", ", p.pad_right,
         ") makes a padded image (", p.C, ", ", Hp, ", ", Wp, ") of more than 2^31-1 elements; "
         "x.shape=", shape_str(x));
  p.P = conv_out_size(p.H, p.R, p.stride_h, p.pad_top, p.pad_bottom, p.dil_h);
  p.Q = conv_out_size(p.W, p.S, p.stride_w, p.pad_left, p.pad_right, p.dil_w);
  checked_numel(op, "y", {p.N, p.K, p.P, p.Q});
  checked_numel(op, "the im2col workspace", {p.C, p.R, p.S, p.P, p.Q});
  return p;
}

inline void check_shape(const char* op, const char* name, const std::vector<int64_t>& got,
                        const std::vector<int64_t>& want) {
  if (got != want)
    fail(op, ": ", name, " must have shape ", shape_str(want), ", got ", shape_str(got));
}

// x (N, C, H, W) pooled by a kh x kw window -> the parameters of y (N, C, P, Q). As for the
// convolution, every derived size is checked to fit before a kernel sees it.
inline Pool2dParams make_pool_params(const char* op, const std::vector<int64_t>& x,
                                     const Pair& kernel, const Pair& stride, const Pads& pad,
                                     bool count_include_pad) {
  if (x.size() != 4) fail(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  checked_numel(op, "x", x);
  if (x[0] < 1 || x[1] < 1 || x[2] < 1 || x[3] < 1) fail(op, ": x must have no empty dimension, got ", shape_str(x));
  if (kernel[0] < 1 || kernel[1] < 1 || kernel[0] > kMaxElements || kernel[1] > kMaxElements)
    fail(op, ": kernel_size must be between 1 and 2^31-1, got (", kernel[0], ", ", kernel[1], ")");
  checked_numel(op, "the window (kernel_size)", {kernel[0], kernel[1]});
  check_geometry(op, stride, pad, {1, 1});
  if (pad[0] > kernel[0] / 2 || pad[2] > kernel[0] / 2 || pad[1] > kernel[1] / 2 || pad[3] > kernel[1] / 2)
    fail(op, ": padding (", pad[0], ", ", pad[1], ", ", pad[2], ", ", pad[3],
         ") must be at most half the window (", kernel[0], ", ", kernel[1], ")");
  Pool2dParams p{};
  p.N = x[0]; p.C = x[1]; p.H = x[2]; p.W = x[3];
  p.kh = kernel[0]; p.kw = kernel[1];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_top = pad[0]; p.pad_left = pad[1]; p.pad_bottom = pad[2]; p.pad_right = pad[3];
  p.count_include_pad = count_include_pad;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;  // < 2^33
  if (p.kh > Hp || p.kw > Wp)
    fail(op, ": kernel_size (", p.kh, ", ", p.kw, ") is larger than the padded input (",
         Hp, ", ", Wp, "); x.shape=", shape_str(x));
  p.P = conv_out_size(p.H, p.kh, p.stride_h, p.pad_top, p.pad_bottom, 1);
  p.Q = conv_out_size(p.W, p.kw, p.stride_w, p.pad_left, p.pad_right, 1);
  checked_numel(op, "y", {p.N, p.C, p.P, p.Q});
  return p;
}

inline Activation to_activation(int act) {
  if (act < 0 || act >= kActivationCount)
    fail("activation code must be 0 (none), 1 (relu), 2 (tanh), 3 (sigmoid), 4 (leaky_relu), "
         "5 (elu), 6 (gelu) or 7 (gelu_tanh), got ", act);
  return static_cast<Activation>(act);
}

// The activation's parameter: the one given, or the activation's default (ops.h). Leaky ReLU's
// slope and ELU's alpha must be finite and >= 0: their backward reads the sign of x from y.
inline float activation_alpha(const char* op, Activation act, bool given, double alpha) {
  if (!given) return default_activation_alpha(act);
  if (!(alpha >= 0.0 && alpha < 1e30))
    fail(op, ": alpha (leaky relu's negative_slope, elu's alpha) must be finite and >= 0, got ", alpha);
  return float(alpha);
}

}  // namespace fastconv
