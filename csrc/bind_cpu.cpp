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
#include <optional>

#include "common/shapes.h"
#include "cpu/buffer_cache.h"
#include "cpu/stream_store.h"
#include "cpu/conv2d_winograd.h"
#include "cpu/gemm/sgemm.h"
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

const float* optional_bias(const char* op, const std::optional<FArray>& b, int64_t K) {
  if (!b) return nullptr;
  if (b->ndim() != 1 || b->shape(0) != K)
    fail(op, ": b must have shape (", K, ",) to match w's ", K, " outputs, got ", shape_str(shape_of(*b)));
  return b->data();
}

FArray conv2d_forward(const FArray& x, const FArray& w, const std::optional<FArray>& b, Pair stride,
                      Pads pad, Pair dilation, int act) {
  const Conv2dParams p = make_conv_params("conv2d", shape_of(x), shape_of(w), stride, pad, dilation);
  const float* bp = optional_bias("conv2d", b, p.K);
  const Activation a = to_activation(act);
  FArray y = empty({p.N, p.K, p.P, p.Q});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_forward(x.data(), w.data(), bp, yp, p, a);
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
                              Pair stride, Pads pad, Pair dilation) {
  const Conv2dParams p = make_conv_params("conv2d_backward_weight", shape_of(x), w_shape, stride, pad, dilation);
  check_shape("conv2d_backward_weight", "dy", shape_of(dy), {p.N, p.K, p.P, p.Q});
  FArray dw = empty(w_shape);
  float* dwp = dw.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::conv2d_backward_weight(dy.data(), x.data(), dwp, p);
  }
  return dw;
}

FArray conv2d_backward_bias(const FArray& dy) {
  if (dy.ndim() != 4) fail("conv2d_backward_bias: dy must be 4-D (N, K, P, Q), got shape ", shape_str(shape_of(dy)));
  const int64_t N = dy.shape(0), K = dy.shape(1), PQ = dy.shape(2) * dy.shape(3);
  FArray db = empty({K});
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

FArray activation_forward(const FArray& x, int act) {
  const Activation a = to_activation(act);
  FArray y = empty(shape_of(x));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_forward(a, x.data(), yp, x.size());
  }
  return y;
}

// (dx, db) for a conv layer: dx = dy * act'(y) and db = dx summed over N, P, Q, in one pass.
py::tuple activation_backward_bias(const FArray& dy, const FArray& y, int act) {
  const Activation a = to_activation(act);
  if (dy.ndim() != 4)
    fail("activation_backward_bias: dy must be 4-D (N, K, P, Q), got shape ", shape_str(shape_of(dy)));
  if (shape_of(dy) != shape_of(y))
    fail("activation_backward_bias: dy has shape ", shape_str(shape_of(dy)), " but y has shape ",
         shape_str(shape_of(y)));
  const int64_t N = dy.shape(0), K = dy.shape(1), PQ = dy.shape(2) * dy.shape(3);
  FArray dx = empty(shape_of(y)), db = empty({K});
  float *dxp = dx.mutable_data(), *dbp = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_backward_bias(a, dy.data(), y.data(), dxp, dbp, N, K, PQ);
  }
  return py::make_tuple(dx, db);
}

FArray activation_backward(const FArray& dy, const FArray& y, int act) {
  const Activation a = to_activation(act);
  if (shape_of(dy) != shape_of(y))
    fail("activation backward: dy has shape ", shape_str(shape_of(dy)), " but y has shape ", shape_str(shape_of(y)));
  FArray dx = empty(shape_of(y));
  float* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::activation_backward(a, dy.data(), y.data(), dxp, y.size());
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

FArray linear_forward(const FArray& x, const FArray& w, const std::optional<FArray>& b, int act) {
  check_linear("linear", x, w);
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(0);
  checked_numel("linear", "y", {N, O});
  const float* bp = optional_bias("linear", b, O);
  const Activation a = to_activation(act);
  FArray y = empty({N, O});
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::linear_forward(x.data(), w.data(), bp, yp, N, I, O, a);
  }
  return y;
}

py::tuple linear_backward(const FArray& dy, const FArray& x, const FArray& w) {
  check_linear("linear_backward", x, w);
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(0);
  check_shape("linear_backward", "dy", shape_of(dy), {N, O});
  FArray dx = empty({N, I}), dw = empty({O, I}), db = empty({O});
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

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastconv's CPU kernels (C++, OpenMP). Use fastconv.functional, which checks "
            "arguments and resolves padding, rather than calling these directly.";
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("pad"), py::arg("dilation"), py::arg("act") = 0,
        "y = act(conv2d(x, w) + b); pad is (top, left, bottom, right); act 0 none, 1 relu, 2 tanh, 3 sigmoid");
  m.def("conv2d_backward_input", &conv2d_backward_input, py::arg("dy"), py::arg("w"), py::arg("x_shape"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), "dx of conv2d");
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("dy"), py::arg("x"), py::arg("w_shape"),
        py::arg("stride"), py::arg("pad"), py::arg("dilation"), "dw of conv2d, summed over the batch");
  m.def("conv2d_backward_bias", &conv2d_backward_bias, py::arg("dy"), "db of conv2d: dy summed over N, P, Q");
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
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("act"));
  m.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("y"), py::arg("act"));
  m.def("activation_backward_bias", &activation_backward_bias, py::arg("dy"), py::arg("y"), py::arg("act"),
        "(dx, db): a conv layer's activation backward and bias gradient in one pass");
  m.def("softmax", &softmax, py::arg("x"), "softmax over the last axis of a 2-D array");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        "(mean loss, dlogits) of softmax + cross-entropy");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act") = 0);
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"), "(dx, dw, db)");
  m.def("sgemm", &sgemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        "op(a) @ op(b) on fastconv's own SGEMM");
  m.def("sgd_update", &sgd_update, py::arg("p"), py::arg("g"), py::arg("velocity"), py::arg("lr"),
        py::arg("momentum"), py::arg("weight_decay"), py::arg("nesterov"),
        "one SGD step in place (fastconv/optimizers.py's float32 arithmetic)");
  m.def("adam_update", &adam_update, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("b1"), py::arg("c1"), py::arg("b2"), py::arg("c2"), py::arg("eps"),
        py::arg("decay"), "one Adam step in place (fastconv/optimizers.py's float32 arithmetic)");
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
  m.def("isa", &cpu::sgemm_isa, "the SGEMM micro-kernel in use: avx512, avx2 or generic");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
