// fastconv._core: the CPU ops bound for Python.
//
// Thin by design: each binding checks shapes (csrc/common/shapes.h), allocates the output
// array, releases the GIL and calls one kernel. Arrays arrive float32 and C-contiguous
// (fastconv/functional.py converts them; forcecast here converts anything else once more).
// Padding words and pair forms are resolved in Python: here stride, dilation and kernel are
// (h, w) and padding is (top, left, bottom, right).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <optional>

#include "common/shapes.h"
#include "cpu/buffer_cache.h"
#include "cpu/conv2d_kernels.h"
#include "cpu/gemm/sgemm.h"
#include "cpu/isa.h"
#include "cpu/stream_store.h"
#include "ops.h"

namespace py = pybind11;
using namespace fastconv;

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

namespace {

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// Every output array comes from the buffer cache (csrc/cpu/buffer_cache.h): a training step's
// arrays then reuse last step's memory instead of page-faulting fresh blocks. The capsule hands
// the block back when NumPy drops the array.
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> empty_of(const std::vector<int64_t>& shape) {
  size_t count = 1;
  for (int64_t d : shape) count *= size_t(d);
  T* data = static_cast<T*>(buffer_cache::acquire(count * sizeof(T)));
  py::capsule owner(data, [](void* block) { buffer_cache::release(block); });
  return py::array_t<T, py::array::c_style | py::array::forcecast>(
      std::vector<py::ssize_t>(shape.begin(), shape.end()), data, owner);
}
FArray empty(const std::vector<int64_t>& shape) { return empty_of<float>(shape); }

// An output the caller gives (a view of a model's flat gradient buffer, say), so the kernel
// writes there and no array is made and copied. Taken as a plain py::array and checked, not
// converted: a converted copy would take the result and leave `out` untouched. It must not
// overlap an input (the kernel would read what it has already written).
FArray output_or_empty(const char* op, const char* name, const std::optional<py::array>& out,
                       const std::vector<int64_t>& shape, std::initializer_list<const FArray*> inputs) {
  if (!out) return empty(shape);
  const py::array& a = *out;
  if (!a.dtype().is(py::dtype::of<float>()))
    fail(op, ": ", name, " must be a float32 array, got dtype ", std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    fail(op, ": ", name, " must be C-contiguous");
  if (!a.writeable()) fail(op, ": ", name, " must be writeable");
  check_shape(op, name, shape_of(a), shape);
  const char* lo = static_cast<const char*>(a.data());
  const char* hi = lo + a.nbytes();
  for (const FArray* in : inputs) {
    const char* in_lo = reinterpret_cast<const char*>(in->data());
    if (lo < in_lo + in->nbytes() && in_lo < hi)
      fail(op, ": ", name, " shares memory with an input; give it an array of its own");
  }
  return py::reinterpret_borrow<FArray>(a);
}

const float* optional_bias(const char* op, const std::optional<FArray>& b, int64_t K) {
  if (!b) return nullptr;
  if (b->ndim() != 1 || b->shape(0) != K)
    fail(op, ": b must have shape (", K, ",) to match w's ", K, " outputs, got ", shape_str(shape_of(*b)));
  return b->data();
}

float alpha_of(const char* op, Activation a, const std::optional<double>& alpha) {
  return activation_alpha(op, a, alpha.has_value(), alpha.value_or(0.0));
}

FArray conv2d_forward(const FArray& x, const FArray& w, const std::optional<FArray>& b, Pair stride,
                      Pads pad, Pair dilation, int act, std::optional<double> alpha) {
  const Conv2dParams p = make_conv_params("conv2d", shape_of(x), shape_of(w), stride, pad, dilation);
  const float* bp = optional_bias("conv2d", b, p.K);
  const Activation a = to_activation(act);
  const float al = alpha_of("conv2d", a, alpha);
  FArray y = empty({p.N, p.K, p.P, p.Q});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_forward(x.data(), w.data(), bp, yp, p, a, al);
  }
  return y;
}

FArray conv2d_backward_input(const FArray& dy, const FArray& w, std::vector<int64_t> x_shape,
                             Pair stride, Pads pad, Pair dilation) {
  const Conv2dParams p = make_conv_params("conv2d_backward_input", x_shape, shape_of(w), stride, pad, dilation);
  check_shape("conv2d_backward_input", "dy", shape_of(dy), {p.N, p.K, p.P, p.Q});
  FArray dx = empty(x_shape);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_input(dy.data(), w.data(), dxp, p);
  }
  return dx;
}

FArray conv2d_backward_weight(const FArray& dy, const FArray& x, std::vector<int64_t> w_shape,
                              Pair stride, Pads pad, Pair dilation, const std::optional<py::array>& out) {
  const Conv2dParams p = make_conv_params("conv2d_backward_weight", shape_of(x), w_shape, stride, pad, dilation);
  check_shape("conv2d_backward_weight", "dy", shape_of(dy), {p.N, p.K, p.P, p.Q});
  FArray dw = output_or_empty("conv2d_backward_weight", "out", out, w_shape, {&dy, &x});
  float* dwp = dw.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_weight(dy.data(), x.data(), dwp, p);
  }
  return dw;
}

FArray conv2d_backward_bias(const FArray& dy, const std::optional<py::array>& out) {
  if (dy.ndim() != 4) fail("conv2d_backward_bias: dy must be 4-D (N, K, P, Q), got shape ", shape_str(shape_of(dy)));
  const int64_t N = dy.shape(0), K = dy.shape(1), PQ = dy.shape(2) * dy.shape(3);
  FArray db = output_or_empty("conv2d_backward_bias", "out", out, {K}, {&dy});
  float* dbp = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_bias(dy.data(), dbp, N, K, PQ);
  }
  return db;
}

FArray max_pool2d_forward(const FArray& x, Pair kernel, Pair stride, Pads pad) {
  const Pool2dParams p = make_pool_params("max_pool2d", shape_of(x), kernel, stride, pad, true);
  FArray y = empty({p.N, p.C, p.P, p.Q});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_forward(x.data(), yp, p);
  }
  return y;
}

FArray max_pool2d_backward(const FArray& dy, const FArray& x, Pair kernel, Pair stride, Pads pad) {
  const Pool2dParams p = make_pool_params("max_pool2d_backward", shape_of(x), kernel, stride, pad, true);
  check_shape("max_pool2d_backward", "dy", shape_of(dy), {p.N, p.C, p.P, p.Q});
  FArray dx = empty(shape_of(x));
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_backward(dy.data(), x.data(), dxp, p);
  }
  return dx;
}

// (y, idx): the forward of the training pair, idx (N, C, P, Q) uint8 (ops.h).
py::tuple max_pool2d_forward_indices(const FArray& x, Pair kernel, Pair stride, Pads pad) {
  const Pool2dParams p = make_pool_params("max_pool2d_forward_indices", shape_of(x), kernel, stride, pad, true);
  if (p.kh * p.kw > 255)
    fail("max_pool2d_forward_indices: a ", p.kh, "x", p.kw, " window has more cells than a byte "
         "index holds (255); use max_pool2d_forward and max_pool2d_backward");
  FArray y = empty({p.N, p.C, p.P, p.Q});
  auto idx = empty_of<uint8_t>({p.N, p.C, p.P, p.Q});
  float* yp = y.mutable_data();
  uint8_t* ip = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_forward_indices(x.data(), yp, ip, p);
  }
  return py::make_tuple(y, idx);
}

FArray max_pool2d_backward_indices(const FArray& dy, const py::array& idx, std::vector<int64_t> x_shape,
                                   Pair kernel, Pair stride, Pads pad) {
  const char* op = "max_pool2d_backward_indices";
  const Pool2dParams p = make_pool_params(op, x_shape, kernel, stride, pad, true);
  check_shape(op, "dy", shape_of(dy), {p.N, p.C, p.P, p.Q});
  if (!py::isinstance<py::array_t<uint8_t>>(idx) || !(idx.flags() & py::array::c_style))
    fail(op, ": indices must be the C-contiguous uint8 array max_pool2d_forward_indices returned, got dtype ",
         std::string(py::str(idx.dtype())));
  check_shape(op, "indices", shape_of(idx), {p.N, p.C, p.P, p.Q});
  const uint8_t* ip = static_cast<const uint8_t*>(idx.data());
  // Never write outside dx: every index must name a real cell of its window.
  const int64_t bad = cpu::max_pool2d_find_bad_index(ip, p);
  if (bad >= 0)
    fail(op, ": indices holds ", int(ip[bad]), " at flat position ", bad,
         ip[bad] >= p.kh * p.kw ? ", outside a " : ", a padded cell of its ", p.kh, "x", p.kw,
         " window; pass the indices max_pool2d_forward_indices returned for this geometry");
  FArray dx = empty(x_shape);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::max_pool2d_backward_indices(dy.data(), ip, dxp, p);
  }
  return dx;
}

FArray avg_pool2d_forward(const FArray& x, Pair kernel, Pair stride, Pads pad, bool count_include_pad) {
  const Pool2dParams p = make_pool_params("avg_pool2d", shape_of(x), kernel, stride, pad, count_include_pad);
  FArray y = empty({p.N, p.C, p.P, p.Q});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::avg_pool2d_forward(x.data(), yp, p);
  }
  return y;
}

FArray avg_pool2d_backward(const FArray& dy, std::vector<int64_t> x_shape, Pair kernel, Pair stride,
                           Pads pad, bool count_include_pad) {
  const Pool2dParams p = make_pool_params("avg_pool2d_backward", x_shape, kernel, stride, pad, count_include_pad);
  check_shape("avg_pool2d_backward", "dy", shape_of(dy), {p.N, p.C, p.P, p.Q});
  FArray dx = empty(x_shape);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::avg_pool2d_backward(dy.data(), dxp, p);
  }
  return dx;
}

FArray activation_forward(const FArray& x, int act, std::optional<double> alpha) {
  const Activation a = to_activation(act);
  const float al = alpha_of("activation_forward", a, alpha);
  FArray y = empty(shape_of(x));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_forward(a, x.data(), yp, x.size(), al);
  }
  return y;
}

// The arrays an activation's backward reads, checked against dy: y (the forward output) for
// every activation but GELU, x (the forward input) for GELU. Returns (y data, x data).
std::pair<const float*, const float*> backward_inputs(const char* op, Activation a, const FArray& dy,
                                                      const std::optional<FArray>& y,
                                                      const std::optional<FArray>& x) {
  const bool needs_x = activation_backward_needs_input(a);
  if (needs_x && !x)
    fail(op, ": gelu's backward needs the forward input x (its derivative is not a function of y)");
  if (!needs_x && !y) fail(op, ": y (the forward output) is required");
  if (y && shape_of(dy) != shape_of(*y))
    fail(op, ": dy has shape ", shape_str(shape_of(dy)), " but y has shape ", shape_str(shape_of(*y)));
  if (x && shape_of(dy) != shape_of(*x))
    fail(op, ": dy has shape ", shape_str(shape_of(dy)), " but x has shape ", shape_str(shape_of(*x)));
  return {y ? y->data() : nullptr, x ? x->data() : nullptr};
}

// (dx, db) for a conv layer: dx = dy * act'(y) and db = dx summed over N, P, Q, in one pass.
py::tuple activation_backward_bias(const FArray& dy, const std::optional<FArray>& y, int act,
                                   std::optional<double> alpha, const std::optional<FArray>& x,
                                   const std::optional<py::array>& db_out) {
  const char* op = "activation_backward_bias";
  const Activation a = to_activation(act);
  const float al = alpha_of(op, a, alpha);
  if (dy.ndim() != 4)
    fail(op, ": dy must be 4-D (N, K, P, Q), got shape ", shape_str(shape_of(dy)));
  const auto [yp, xp] = backward_inputs(op, a, dy, y, x);
  const int64_t N = dy.shape(0), K = dy.shape(1), PQ = dy.shape(2) * dy.shape(3);
  FArray dx = empty(shape_of(dy)), db = output_or_empty(op, "db_out", db_out, {K}, {&dy});
  float *dxp = dx.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_backward_bias(a, dy.data(), yp, dxp, dbp, N, K, PQ, al, xp);
  }
  return py::make_tuple(dx, db);
}

FArray activation_backward(const FArray& dy, const std::optional<FArray>& y, int act,
                           std::optional<double> alpha, const std::optional<FArray>& x) {
  const char* op = "activation backward";
  const Activation a = to_activation(act);
  const float al = alpha_of(op, a, alpha);
  const auto [yp, xp] = backward_inputs(op, a, dy, y, x);
  FArray dx = empty(shape_of(dy));
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_backward(a, dy.data(), yp, dxp, dy.size(), al, xp);
  }
  return dx;
}

FArray softmax(const FArray& x) {
  if (x.ndim() != 2 || x.shape(1) < 1) fail("softmax: x must be 2-D (rows, cols) with cols >= 1, got ", shape_str(shape_of(x)));
  FArray y = empty(shape_of(x));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::softmax_forward(x.data(), yp, x.shape(0), x.shape(1));
  }
  return y;
}

py::tuple softmax_cross_entropy(const FArray& logits, const LArray& labels) {
  if (logits.ndim() != 2 || logits.shape(0) < 1 || logits.shape(1) < 1)
    fail("softmax_cross_entropy: logits must be 2-D (N, classes) with N, classes >= 1, got ", shape_str(shape_of(logits)));
  const int64_t N = logits.shape(0), C = logits.shape(1);
  if (labels.ndim() != 1 || labels.shape(0) != N)
    fail("softmax_cross_entropy: labels must have shape (", N, ",) to match logits ", shape_str(shape_of(logits)),
         ", got ", shape_str(shape_of(labels)));
  const int64_t* lp = labels.data();
  for (int64_t i = 0; i < N; ++i)
    if (lp[i] < 0 || lp[i] >= C)
      fail("softmax_cross_entropy: labels[", i, "] = ", lp[i], " is out of range for ", C, " classes");
  FArray d = empty({N, C});
  float* dp = d.mutable_data();
  float loss;
  {
    py::gil_scoped_release nogil;
    loss = cpu::softmax_cross_entropy(logits.data(), lp, dp, N, C);
  }
  return py::make_tuple(loss, d);
}

void check_linear(const char* op, const FArray& x, const FArray& w) {
  if (x.ndim() != 2) fail(op, ": x must be 2-D (N, in_features), got shape ", shape_str(shape_of(x)));
  if (w.ndim() != 2) fail(op, ": w must be 2-D (out_features, in_features), got shape ", shape_str(shape_of(w)));
  if (w.shape(1) != x.shape(1))
    fail(op, ": w has ", w.shape(1), " input features but x has ", x.shape(1), " (x.shape=",
         shape_str(shape_of(x)), ", w.shape=", shape_str(shape_of(w)), ")");
}

FArray linear_forward(const FArray& x, const FArray& w, const std::optional<FArray>& b, int act,
                      std::optional<double> alpha) {
  check_linear("linear", x, w);
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(0);
  checked_numel("linear", "y", {N, O});
  const float* bp = optional_bias("linear", b, O);
  const Activation a = to_activation(act);
  const float al = alpha_of("linear", a, alpha);
  FArray y = empty({N, O});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::linear_forward(x.data(), w.data(), bp, yp, N, I, O, a, al);
  }
  return y;
}

py::tuple linear_backward(const FArray& dy, const FArray& x, const FArray& w,
                          const std::optional<py::array>& dw_out, const std::optional<py::array>& db_out) {
  check_linear("linear_backward", x, w);
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(0);
  check_shape("linear_backward", "dy", shape_of(dy), {N, O});
  FArray dx = empty({N, I}), dw = output_or_empty("linear_backward", "dw_out", dw_out, {O, I}, {&dy, &x, &w}),
         db = output_or_empty("linear_backward", "db_out", db_out, {O}, {&dy, &x, &w});
  float *dxp = dx.mutable_data(), *dwp = dw.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::linear_backward(dy.data(), x.data(), w.data(), dxp, dwp, dbp, N, I, O);
  }
  return py::make_tuple(dx, dw, db);
}

FArray sgemm(const FArray& a, const FArray& b, bool trans_a, bool trans_b) {
  if (a.ndim() != 2 || b.ndim() != 2)
    fail("sgemm: a and b must be 2-D, got ", shape_str(shape_of(a)), " and ", shape_str(shape_of(b)));
  const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
  const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
  if (K != Kb)
    fail("sgemm: inner dimensions differ: op(a) is (", M, ", ", K, ") and op(b) is (", Kb, ", ", N, ")");
  checked_numel("sgemm", "the product", {M, N});
  FArray c = empty({M, N});
  float* cp = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (K == 0) std::memset(cp, 0, sizeof(float) * M * N);
    else cpu::sgemm(trans_a, trans_b, M, N, K, 1.f, a.data(), a.shape(1), b.data(), b.shape(1), 0.f, cp, N);
  }
  return c;
}

// An array an optimiser step updates in place: float32, C-contiguous, writeable, n elements
// (a converted copy would be updated instead of the caller's array, silently).
float* inplace_buffer(const char* op, const char* name, py::array& a, int64_t n) {
  if (!py::isinstance<py::array_t<float>>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    fail(op, ": ", name, " must be a writeable C-contiguous float32 array");
  if (a.size() != n) fail(op, ": ", name, " has ", a.size(), " elements, p has ", n);
  return static_cast<float*>(a.mutable_data());
}

void sgd_update(py::array p, const FArray& g, std::optional<py::array> velocity, float lr,
                float momentum, float weight_decay, bool nesterov) {
  const int64_t n = p.size();
  float* pp = inplace_buffer("sgd_update", "p", p, n);
  if (g.size() != n) fail("sgd_update: g has ", g.size(), " elements, p has ", n);
  float* vp = velocity ? inplace_buffer("sgd_update", "velocity", *velocity, n) : nullptr;
  py::gil_scoped_release nogil;
  cpu::sgd_update(pp, g.data(), vp, n, lr, momentum, weight_decay, nesterov);
}

// (y, mask) of inverted dropout: mask = (u >= rate) / (1 - rate), u from the counter-based
// generator of (seed, step, index) that the CUDA kernel uses; y = x * mask.
py::tuple dropout_forward(const FArray& x, double rate, uint64_t seed, uint64_t step) {
  if (!(rate >= 0.0 && rate < 1.0)) fail("dropout_forward: rate must be in [0, 1), got ", rate);
  FArray y = empty(shape_of(x)), mask = empty(shape_of(x));
  float* yp = y.mutable_data();
  float* mp = mask.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::dropout_forward(x.data(), yp, mp, x.size(), float(rate), seed, step);
  }
  return py::make_tuple(y, mask);
}

void adam_update(py::array p, const FArray& g, py::array m, py::array v, float alpha, float b1,
                 float c1, float b2, float c2, float eps, float decay) {
  const int64_t n = p.size();
  float* pp = inplace_buffer("adam_update", "p", p, n);
  float* mp = inplace_buffer("adam_update", "m", m, n);
  float* vp = inplace_buffer("adam_update", "v", v, n);
  if (g.size() != n) fail("adam_update: g has ", g.size(), " elements, p has ", n);
  py::gil_scoped_release nogil;
  cpu::adam_update(pp, g.data(), mp, vp, n, alpha, b1, c1, b2, c2, eps, decay);
}

// y (N, C, ...) = act(y + b[c]) in place (b may be None).
void bias_activation_inplace(py::array y, const std::optional<FArray>& b, int act,
                             std::optional<double> alpha) {
  const char* op = "bias_activation_";
  const Activation a = to_activation(act);
  const float al = alpha_of(op, a, alpha);
  if (y.ndim() < 2) fail(op, ": y must be at least 2-D (N, C, ...), got shape ", shape_str(shape_of(y)));
  float* yp = inplace_buffer(op, "y", y, y.size());
  const int64_t N = y.shape(0), C = y.shape(1), inner = N * C != 0 ? y.size() / (N * C) : 0;
  const float* bp = optional_bias(op, b, C);
  py::gil_scoped_release nogil;
  cpu::bias_activation_forward(yp, bp, N, C, inner, a, al);
}

// ---------------------------------------------------------------- upsampling
void check_upsample(const char* op, const std::vector<int64_t>& x_shape, Pair scale) {
  if (x_shape.size() != 4) fail(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x_shape));
  checked_numel(op, "x", x_shape);
  if (scale[0] < 1 || scale[1] < 1) fail(op, ": scale must be >= 1, got (", scale[0], ", ", scale[1], ")");
  checked_numel(op, "y", {x_shape[0], x_shape[1], x_shape[2] * scale[0], x_shape[3] * scale[1]});
}

// mode 0 nearest, 1 bilinear.
FArray upsample2d_forward(const FArray& x, Pair scale, int mode, bool align_corners) {
  const char* op = "upsample2d";
  const std::vector<int64_t> xs = shape_of(x);
  check_upsample(op, xs, scale);
  if (mode != 0 && mode != 1) fail(op, ": mode must be 0 (nearest) or 1 (bilinear), got ", mode);
  const int64_t planes = xs[0] * xs[1], H = xs[2], W = xs[3], Ho = H * scale[0], Wo = W * scale[1];
  FArray y = empty({xs[0], xs[1], Ho, Wo});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (planes * Ho * Wo == 0) return y;
    if (mode == 0) cpu::upsample2d_nearest_forward(x.data(), yp, planes, H, W, scale[0], scale[1]);
    else cpu::upsample2d_bilinear_forward(x.data(), yp, planes, H, W, Ho, Wo, align_corners);
  }
  return y;
}

FArray upsample2d_backward(const FArray& dy, std::vector<int64_t> x_shape, Pair scale, int mode,
                           bool align_corners) {
  const char* op = "upsample2d_backward";
  check_upsample(op, x_shape, scale);
  if (mode != 0 && mode != 1) fail(op, ": mode must be 0 (nearest) or 1 (bilinear), got ", mode);
  const int64_t planes = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = H * scale[0], Wo = W * scale[1];
  check_shape(op, "dy", shape_of(dy), {x_shape[0], x_shape[1], Ho, Wo});
  FArray dx = empty(x_shape);
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (planes * H * W == 0) return dx;
    if (mode == 0) cpu::upsample2d_nearest_backward(dy.data(), dxp, planes, H, W, scale[0], scale[1]);
    else cpu::upsample2d_bilinear_backward(dy.data(), dxp, planes, H, W, Ho, Wo, align_corners);
  }
  return dx;
}

// ---------------------------------------------------------------- batch norm
// x (N, C, ...) as (N, C, inner); a per-channel argument must be (C,).
struct BnShape { int64_t N, C, inner; };
BnShape bn_shape(const char* op, const py::array& x) {
  if (x.ndim() < 2) fail(op, ": x must be at least 2-D (N, C, ...), got shape ", shape_str(shape_of(x)));
  const int64_t N = x.shape(0), C = x.shape(1);
  if (N < 1 || C < 1) fail(op, ": x must be non-empty, got shape ", shape_str(shape_of(x)));
  return BnShape{N, C, x.size() / (N * C)};
}
const float* channel_arg(const char* op, const char* name, const std::optional<FArray>& a, int64_t C) {
  if (!a) return nullptr;
  if (a->ndim() != 1 || a->shape(0) != C)
    fail(op, ": ", name, " must have shape (", C, ",) (one value per channel), got ", shape_str(shape_of(*a)));
  return a->data();
}

// (y, mean, inv_std); running_mean and running_var (writeable float32 (C,)) updated in place.
py::tuple batch_norm_forward_training(const FArray& x, const std::optional<FArray>& gamma,
                                      const std::optional<FArray>& beta,
                                      std::optional<py::array> running_mean,
                                      std::optional<py::array> running_var, double eps,
                                      double momentum, bool unbiased_running_var) {
  const char* op = "batch_norm";
  const BnShape s = bn_shape(op, x);
  const float* g = channel_arg(op, "gamma", gamma, s.C);
  const float* b = channel_arg(op, "beta", beta, s.C);
  float* rm = running_mean ? inplace_buffer(op, "running_mean", *running_mean, s.C) : nullptr;
  float* rv = running_var ? inplace_buffer(op, "running_var", *running_var, s.C) : nullptr;
  if (!(eps > 0.0)) fail(op, ": eps must be > 0, got ", eps);
  if (!(momentum >= 0.0 && momentum <= 1.0)) fail(op, ": momentum must be in [0, 1], got ", momentum);
  FArray y = empty(shape_of(x)), mean = empty({s.C}), inv_std = empty({s.C});
  float *yp = y.mutable_data(), *mp = mean.mutable_data(), *ip = inv_std.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward_training(x.data(), g, b, yp, mp, ip, rm, rv, s.N, s.C, s.inner,
                                     float(eps), float(momentum), unbiased_running_var);
  }
  return py::make_tuple(y, mean, inv_std);
}

FArray batch_norm_forward_inference(const FArray& x, const std::optional<FArray>& gamma,
                                    const std::optional<FArray>& beta, const FArray& running_mean,
                                    const FArray& running_var, double eps) {
  const char* op = "batch_norm";
  const BnShape s = bn_shape(op, x);
  const float* g = channel_arg(op, "gamma", gamma, s.C);
  const float* b = channel_arg(op, "beta", beta, s.C);
  const float* rm = channel_arg(op, "running_mean", running_mean, s.C);
  const float* rv = channel_arg(op, "running_var", running_var, s.C);
  if (!(eps > 0.0)) fail(op, ": eps must be > 0, got ", eps);
  FArray y = empty(shape_of(x));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward_inference(x.data(), g, b, yp, rm, rv, s.N, s.C, s.inner, float(eps));
  }
  return y;
}

// (dx, dgamma, dbeta)
py::tuple batch_norm_backward(const FArray& dy, const FArray& x, const std::optional<FArray>& gamma,
                              const FArray& mean, const FArray& inv_std, bool batch_stats) {
  const char* op = "batch_norm_backward";
  const BnShape s = bn_shape(op, x);
  check_shape(op, "dy", shape_of(dy), shape_of(x));
  const float* g = channel_arg(op, "gamma", gamma, s.C);
  const float* mp = channel_arg(op, "mean", mean, s.C);
  const float* ip = channel_arg(op, "inv_std", inv_std, s.C);
  FArray dx = empty(shape_of(x)), dgamma = empty({s.C}), dbeta = empty({s.C});
  float *dxp = dx.mutable_data(), *dgp = dgamma.mutable_data(), *dbp = dbeta.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::batch_norm_backward(dy.data(), x.data(), g, mp, ip, dxp, dgp, dbp, s.N, s.C, s.inner, batch_stats);
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

// ---------------------------------------------------------------- binary cross-entropy
py::tuple bce_with_logits(const FArray& logits, const FArray& targets, const std::optional<FArray>& weights) {
  const char* op = "binary_cross_entropy_with_logits";
  if (logits.ndim() < 1 || logits.size() < 1)
    fail(op, ": logits must be non-empty with a batch axis, got shape ", shape_str(shape_of(logits)));
  check_shape(op, "targets", shape_of(targets), shape_of(logits));
  const int64_t N = logits.shape(0), inner = logits.size() / N;
  const float* wp = nullptr;
  if (weights) {
    if (weights->ndim() != 1 || weights->shape(0) != N)
      fail(op, ": weights must have shape (", N, ",) (one per sample), got ", shape_str(shape_of(*weights)));
    wp = weights->data();
  }
  FArray d = empty(shape_of(logits));
  float* dp = d.mutable_data();
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = cpu::bce_with_logits(logits.data(), targets.data(), wp, dp, N, inner);
  }
  return py::make_tuple(loss, d);
}

void rmsprop_update(py::array p, const FArray& g, py::array ms, std::optional<py::array> mg,
                    std::optional<py::array> momentum_buffer, float lr, float rho, float c,
                    float momentum, float eps, float decay) {
  const int64_t n = p.size();
  float* pp = inplace_buffer("rmsprop_update", "p", p, n);
  float* msp = inplace_buffer("rmsprop_update", "ms", ms, n);
  float* mgp = mg ? inplace_buffer("rmsprop_update", "mg", *mg, n) : nullptr;
  float* bp = momentum_buffer ? inplace_buffer("rmsprop_update", "momentum_buffer", *momentum_buffer, n)
                              : nullptr;
  if (g.size() != n) fail("rmsprop_update: g has ", g.size(), " elements, p has ", n);
  py::gil_scoped_release nogil;
  cpu::rmsprop_update(pp, g.data(), msp, mgp, bp, n, lr, rho, c, momentum, eps, decay);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastconv's CPU kernels (C++, OpenMP). Use fastconv.functional, which checks "
            "arguments and resolves padding, rather than calling these directly.";
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("pad"), py::arg("dilation"), py::arg("act") = 0, py::arg("alpha") = py::none(),
        "y = act(conv2d(x, w) + b); pad is (top, left, bottom, right); act 0 none, 1 relu, 2 tanh, "
        "3 sigmoid, 4 leaky_relu, 5 elu, 6 gelu, 7 gelu_tanh; alpha the activation's parameter "
        "(None: its default)");
  m.def("conv2d_backward_input", &conv2d_backward_input, py::arg("dy"), py::arg("w"), py::arg("x_shape"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), "dx of conv2d");
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("dy"), py::arg("x"), py::arg("w_shape"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), py::arg("out") = py::none(),
        "dw of conv2d, summed over the batch; written into out (float32, C-contiguous, w_shape) "
        "when given, and returned");
  m.def("conv2d_backward_bias", &conv2d_backward_bias, py::arg("dy"), py::arg("out") = py::none(),
        "db of conv2d: dy summed over N, P, Q (written into out when given)");
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("pad"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("x"), py::arg("kernel"),
        py::arg("stride"), py::arg("pad"));
  m.def("max_pool2d_forward_indices", &max_pool2d_forward_indices, py::arg("x"), py::arg("kernel"),
        py::arg("stride"), py::arg("pad"), "(y, idx): max pooling and where each maximum lies");
  m.def("max_pool2d_backward_indices", &max_pool2d_backward_indices, py::arg("dy"), py::arg("indices"),
        py::arg("x_shape"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
        "dx from dy and the forward's idx");
  m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("x"), py::arg("kernel"), py::arg("stride"),
        py::arg("pad"), py::arg("count_include_pad"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("dy"), py::arg("x_shape"), py::arg("kernel"),
        py::arg("stride"), py::arg("pad"), py::arg("count_include_pad"));
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("act"), py::arg("alpha") = py::none());
  m.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("y"), py::arg("act"),
        py::arg("alpha") = py::none(), py::arg("x") = py::none(),
        "dx = dy * act'(x), from the forward output y (gelu: from the forward input x, y may be None)");
  m.def("activation_backward_bias", &activation_backward_bias, py::arg("dy"), py::arg("y"), py::arg("act"),
        py::arg("alpha") = py::none(), py::arg("x") = py::none(), py::arg("db_out") = py::none(),
        "(dx, db): a conv layer's activation backward and bias gradient in one pass (db written "
        "into db_out when given)");
  m.def("bias_activation_", &bias_activation_inplace, py::arg("y"), py::arg("b"), py::arg("act") = 0,
        py::arg("alpha") = py::none(), "y (N, C, ...) = act(y + b[c]) in place; b may be None");
  m.def("softmax", &softmax, py::arg("x"), "softmax over the last axis of a 2-D array");
  m.def("upsample2d_forward", &upsample2d_forward, py::arg("x"), py::arg("scale"), py::arg("mode"),
        py::arg("align_corners") = false, "y (N, C, H*sh, W*sw); mode 0 nearest, 1 bilinear");
  m.def("upsample2d_backward", &upsample2d_backward, py::arg("dy"), py::arg("x_shape"), py::arg("scale"),
        py::arg("mode"), py::arg("align_corners") = false, "dx of upsample2d_forward");
  m.def("batch_norm_forward_training", &batch_norm_forward_training, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean"), py::arg("running_var"), py::arg("eps"),
        py::arg("momentum"), py::arg("unbiased_running_var"),
        "(y, mean, inv_std) from the batch statistics; the running statistics updated in place "
        "(running = momentum * running + (1 - momentum) * batch)");
  m.def("batch_norm_forward_inference", &batch_norm_forward_inference, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("running_mean"), py::arg("running_var"), py::arg("eps"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("inv_std"), py::arg("batch_stats") = true, "(dx, dgamma, dbeta)");
  m.def("bce_with_logits", &bce_with_logits, py::arg("logits"), py::arg("targets"),
        py::arg("weights") = py::none(), "(mean loss, dlogits) of binary cross-entropy from logits");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        "(mean loss, dlogits) of softmax + cross-entropy");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act") = 0,
        py::arg("alpha") = py::none());
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("dw_out") = py::none(), py::arg("db_out") = py::none(),
        "(dx, dw, db); dw and db written into dw_out and db_out when given");
  m.def("sgemm", &sgemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        "op(a) @ op(b) on fastconv's own SGEMM");
  m.def("sgd_update", &sgd_update, py::arg("p"), py::arg("g"), py::arg("velocity"), py::arg("lr"),
        py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"),
        "one SGD step in place (fastconv/optimizers.py's float32 arithmetic)");
  m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("rate"), py::arg("seed"),
        py::arg("step") = 0,
        "(y, mask): inverted dropout, mask = (u >= rate) / (1 - rate) with u from a counter-based "
        "generator of (seed, step, index), the CUDA kernel's numbers; y = x * mask");
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("b1"), py::arg("c1"), py::arg("b2"), py::arg("c2"), py::arg("eps"),
        py::arg("decay"), "one Adam step in place (fastconv/optimizers.py's float32 arithmetic)");
  m.def("rmsprop_update", &rmsprop_update, py::arg("p"), py::arg("g"), py::arg("ms"), py::arg("mg"),
        py::arg("momentum_buffer"), py::arg("lr"), py::arg("rho"), py::arg("c"), py::arg("momentum"),
        py::arg("eps"), py::arg("decay"),
        "one RMSprop step in place (fastconv/optimizers.py's float32 arithmetic); mg and "
        "momentum_buffer may be None");
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("buffer_cache_stats", [] {
    const buffer_cache::Stats s = buffer_cache::stats();
    py::dict d;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    d["idle_bytes"] = s.idle_bytes;
    d["idle_blocks"] = s.idle_blocks;
    d["limit_bytes"] = s.limit_bytes;
    return d;
  }, "The output-buffer cache's counters: hits, misses, idle_bytes, idle_blocks, limit_bytes.");
  m.def("_stream_store_threshold", &cpu::stream_store_threshold,
        "Outputs above this many bytes are written with streaming stores (csrc/cpu/stream_store.h).");
  m.def("_set_stream_store_threshold", &cpu::set_stream_store_threshold, py::arg("bytes"),
        "Set that threshold (tests); -1 restores the default, half the last-level cache.");
  m.def("_buffer_cache_env_problem", &buffer_cache::env_problem,
        "Why FASTCONV_BUFFER_CACHE_MB could not be read (the default limit then holds), or ''.");
  m.def("buffer_cache_clear", &buffer_cache::clear,
        "Free the cache's idle blocks; returns the bytes freed.");
  m.def("buffer_cache_set_limit", [](int64_t bytes) {
    if (bytes < 0) fail("buffer_cache_set_limit: bytes must be >= 0, got ", bytes);
    buffer_cache::set_limit(size_t(bytes));
  }, py::arg("bytes"), "Cap the idle bytes the cache keeps (0 turns it off).");
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"),
        "Set the thread count of every CPU kernel, process-wide (1 <= n <= max_num_threads()).");
  m.def("max_num_threads", &cpu::max_num_threads, "The largest count set_num_threads takes.");
  // Tests and benchmarks: 0 never use Winograd for 3x3 convolutions, 1 where it pays (default),
  // 2 for every 3x3 stride-1 problem. Returns the previous mode.
  // Tests: the kernel each pass of a convolution runs here, (forward, backward input,
  // backward weight), so a test can show it reaches the path it means to check.
  m.def("_conv2d_algorithms", [](std::vector<int64_t> x_shape, std::vector<int64_t> w_shape,
                                 Pair stride, Pads pad, Pair dilation) {
    const Conv2dParams p = make_conv_params("_conv2d_algorithms", x_shape, w_shape, stride, pad, dilation);
    return py::make_tuple(cpu::conv2d_algorithm(0, p), cpu::conv2d_algorithm(1, p),
                          cpu::conv2d_algorithm(2, p));
  }, py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("pad"), py::arg("dilation"));
  m.def("_set_winograd_mode", [](int mode) {
    const int old = cpu::winograd_mode();
    cpu::set_winograd_mode(mode);
    return old;
  }, py::arg("mode"));
  m.def("isa", [] { return cpu::isa_name(cpu::selected_isa()); },
        "the ISA level every CPU kernel runs at (FASTCONV_ISA honoured): avx512, avx2 or generic");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
