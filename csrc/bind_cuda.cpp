// fastconv._cuda: the CUDA backend's Python bindings.
//
// A device tensor type (Tensor: float32 or int64, dense row-major, on the GPU, memory from the
// caching allocator; NumPy copies in and out; zero-copy exchange with PyTorch, CuPy and others
// through __cuda_array_interface__ v3 and DLPack), and the same op functions, with the same
// argument names, as fastconv._core, taking and returning Tensors.
//
// This file is plain C++ (no CUDA header): everything CUDA lives behind csrc/cuda/runtime.h
// and the fastconv::cuda ops of csrc/ops.h. Each op checks that a GPU is present (RuntimeError
// otherwise), then validates every shape (ValueError naming the argument) before anything is
// launched, so no call from Python can reach a kernel with inconsistent sizes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "ops.h"

namespace py = pybind11;

namespace fastconv {
namespace cuda {
namespace {

// ---------------------------------------------------------------- DLPack (ABI v0.8, legacy)
// The stable C structs of dlpack.h that the "dltensor" capsule protocol exchanges.
struct DLDevice { int32_t device_type; int32_t device_id; };
struct DLDataType { uint8_t code; uint8_t bits; uint16_t lanes; };
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
constexpr int32_t kDLCUDA = 2;
constexpr uint8_t kDLInt = 0, kDLFloat = 2;

// ---------------------------------------------------------------- errors and shapes
constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;  // kernels decode indices in int32

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw std::invalid_argument(os.str());
}

template <class... Args>
[[noreturn]] void fail_type(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw py::type_error(os.str());
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

int64_t checked_numel(const char* op, const char* name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(op, ": ", name, " has a negative dimension ", shape_str(shape));
    if (d != 0 && n > kMaxElements / d)
      fail(op, ": ", name, " of shape ", shape_str(shape), " has more than 2^31-1 elements");
    n *= d;
  }
  return n;
}

// ---------------------------------------------------------------- the device tensor
enum class DType { Float32, Int64 };

const char* dtype_name(DType t) { return t == DType::Float32 ? "float32" : "int64"; }
size_t itemsize(DType t) { return t == DType::Float32 ? 4 : 8; }

DType parse_dtype(const py::object& obj) {
  const std::string name = py::str(py::dtype::from_args(obj).attr("name"));
  if (name == "float32") return DType::Float32;
  if (name == "int64") return DType::Int64;
  fail_type("fastconv.cuda.Tensor: dtype must be float32 or int64, got ", name);
}

// Device memory with its owner: a block of the caching allocator, or foreign memory imported
// through DLPack (then `release` calls the producer's deleter).
struct Storage {
  void* ptr = nullptr;
  std::function<void()> release;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) {
      release();
    } else {
      device_free(ptr);
    }
  }
};

struct Tensor {
  std::shared_ptr<Storage> storage;
  void* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::Float32;
  int device = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * itemsize(dtype); }
  int64_t dim(int i) const { return shape[size_t(i)]; }
  int ndim() const { return int(shape.size()); }
  const float* cf() const { return static_cast<const float*>(data); }
  float* f() const { return static_cast<float*>(data); }

  // Uninitialised tensor from the caching allocator.
  static Tensor empty(const std::vector<int64_t>& shape, DType dtype,
                      const char* op = "fastconv.cuda.Tensor") {
    require_device();
    const int64_t n = checked_numel(op, "shape", shape);
    Tensor t;
    t.storage = std::make_shared<Storage>();
    t.storage->ptr = device_alloc(size_t(n) * itemsize(dtype));
    t.data = t.storage->ptr;
    t.shape = shape;
    t.dtype = dtype;
    t.device = current_device();
    return t;
  }
};

Tensor empty_f32(const std::vector<int64_t>& shape, const char* op) {
  return Tensor::empty(shape, DType::Float32, op);
}

Tensor tensor_from_numpy(const py::object& obj) {
  require_device();
  if (py::isinstance<Tensor>(obj)) {  // a device copy
    const Tensor& src = obj.cast<const Tensor&>();
    Tensor t = Tensor::empty(src.shape, src.dtype);
    copy_device_to_device(t.data, src.data, src.nbytes());
    return t;
  }
  py::array any = py::array::ensure(obj);
  if (!any) fail_type("fastconv.cuda.Tensor.from_numpy: expected an array-like, got ",
                      std::string(py::str(py::type::of(obj))));
  const char kind = any.dtype().kind();
  py::array arr;
  DType dtype;
  if (kind == 'i' || kind == 'u') {
    arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(any);
    dtype = DType::Int64;
  } else if (kind == 'f' || kind == 'b') {
    arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(any);
    dtype = DType::Float32;
  } else {
    fail_type("fastconv.cuda.Tensor.from_numpy: dtype ", std::string(py::str(any.dtype())),
              " is not supported (use a float or integer array)");
  }
  if (!arr) throw py::error_already_set();
  std::vector<int64_t> shape(arr.shape(), arr.shape() + arr.ndim());
  Tensor t = Tensor::empty(shape, dtype, "fastconv.cuda.Tensor.from_numpy");
  const void* src = arr.data();
  const size_t bytes = t.nbytes();
  {
    py::gil_scoped_release nogil;
    copy_host_to_device(t.data, src, bytes);
  }
  return t;
}

py::array tensor_to_numpy(const Tensor& t) {
  py::array out = t.dtype == DType::Float32 ? py::array(py::array_t<float>(t.shape))
                                            : py::array(py::array_t<int64_t>(t.shape));
  void* dst = out.mutable_data();
  const size_t bytes = t.nbytes();
  {
    py::gil_scoped_release nogil;
    copy_device_to_host(dst, t.data, bytes);  // cudaMemcpy waits for the queued kernels
  }
  return out;
}

py::tuple shape_tuple(const std::vector<int64_t>& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
  return t;
}

// A view with another shape over the same memory (one dimension may be -1).
Tensor tensor_reshape(const Tensor& t, std::vector<int64_t> shape) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("Tensor.reshape: only one dimension may be -1, got ", shape_str(shape));
      infer = int64_t(i);
    } else if (shape[i] < 0) {
      fail("Tensor.reshape: invalid shape ", shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0 && known == 0 && t.numel() == 0) {
    shape[size_t(infer)] = 0;  // (-1, 0) of an empty tensor: the -1 is free, take 0
  } else if (infer >= 0) {
    if (known == 0 || t.numel() % known != 0)
      fail("Tensor.reshape: cannot reshape ", shape_str(t.shape), " into ", shape_str(shape));
    shape[size_t(infer)] = t.numel() / known;
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (n != t.numel())
    fail("Tensor.reshape: cannot reshape ", shape_str(t.shape), " (", t.numel(),
         " elements) into ", shape_str(shape));
  Tensor v = t;
  v.shape = shape;
  return v;
}

// ---------------------------------------------------------------- CUDA array interface
py::dict cuda_array_interface(const Tensor& t) {
  py::dict d;
  d["shape"] = shape_tuple(t.shape);
  d["typestr"] = t.dtype == DType::Float32 ? "<f4" : "<i8";
  d["data"] = py::make_tuple(py::int_(reinterpret_cast<uintptr_t>(t.data)), false);
  d["version"] = 3;
  d["strides"] = py::none();
  d["stream"] = 1;  // the data is ready once the legacy default stream reaches this point
  return d;
}

// Copies the memory described by obj.__cuda_array_interface__ into a new Tensor.
Tensor tensor_from_cai(const py::object& obj) {
  require_device();
  py::dict cai = obj.attr("__cuda_array_interface__");
  const std::string typestr = py::str(cai["typestr"]);
  DType dtype;
  if (typestr == "<f4" || typestr == "=f4" || typestr == "|f4") dtype = DType::Float32;
  else if (typestr == "<i8" || typestr == "=i8") dtype = DType::Int64;
  else fail_type("fastconv.cuda.Tensor.from_cuda_array_interface: typestr must be '<f4' or '<i8', got '", typestr, "'");
  std::vector<int64_t> shape;
  for (auto d : py::tuple(cai["shape"])) shape.push_back(d.cast<int64_t>());
  if (cai.contains("mask") && !cai["mask"].is_none())
    fail("fastconv.cuda.Tensor.from_cuda_array_interface: masked arrays are not supported");
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    py::tuple st(cai["strides"]);
    int64_t expect = int64_t(itemsize(dtype));
    for (size_t i = shape.size(); i-- > 0;) {
      if (shape[i] != 1 && st[i].cast<int64_t>() != expect)
        fail("fastconv.cuda.Tensor.from_cuda_array_interface: the array must be C-contiguous");
      expect *= shape[i];
    }
  }
  const uintptr_t ptr = py::tuple(cai["data"])[0].cast<uintptr_t>();
  if (cai.contains("stream") && !cai["stream"].is_none()) {
    const int64_t stream = cai["stream"].cast<int64_t>();
    if (stream != 1) synchronize_stream(uintptr_t(stream));  // 1: our own (legacy) stream
  }
  Tensor t = Tensor::empty(shape, dtype, "fastconv.cuda.Tensor.from_cuda_array_interface");
  if (t.nbytes()) copy_device_to_device(t.data, reinterpret_cast<const void*>(ptr), t.nbytes());
  return t;
}

// ---------------------------------------------------------------- DLPack export and import
struct DLPackContext {
  std::shared_ptr<Storage> storage;  // keeps the memory alive until the consumer is done
  std::vector<int64_t> shape, strides;
  DLManagedTensor managed;
};

void dlpack_deleter(DLManagedTensor* self) {
  delete static_cast<DLPackContext*>(self->manager_ctx);
}

// Runs when the capsule dies; a consumer renames a capsule it took to "used_dltensor" and
// calls the deleter itself, so only a capsule nobody consumed is freed here.
void dlpack_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed && managed->deleter) managed->deleter(managed);
  } else {
    PyErr_Clear();
  }
}

py::object tensor_dlpack(const Tensor& t, const py::object& stream) {
  // Our kernels run on the legacy default stream; a consumer on another stream (any value but
  // None, 1 = legacy and -1 = "do not synchronise") gets a finished tensor.
  if (!stream.is_none()) {
    const int64_t s = stream.cast<int64_t>();
    if (s != 1 && s != -1) synchronize_stream(0);
  }
  auto* ctx = new DLPackContext();
  ctx->storage = t.storage;
  ctx->shape = t.shape;
  ctx->strides.assign(t.shape.size(), 1);
  for (size_t i = t.shape.size(); i-- > 1;) ctx->strides[i - 1] = ctx->strides[i] * t.shape[i];
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = t.data;
  dl.device = DLDevice{kDLCUDA, t.device};
  dl.ndim = int32_t(t.shape.size());
  dl.dtype = t.dtype == DType::Float32 ? DLDataType{kDLFloat, 32, 1} : DLDataType{kDLInt, 64, 1};
  dl.shape = ctx->shape.data();
  dl.strides = ctx->strides.data();
  dl.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = dlpack_deleter;
  PyObject* cap = PyCapsule_New(&ctx->managed, "dltensor", dlpack_capsule_destructor);
  if (!cap) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// Wraps a DLPack producer's CUDA memory without a copy (the producer's deleter runs when the
// last Tensor using it goes away). Objects with only __cuda_array_interface__ are copied.
Tensor tensor_from_dlpack(const py::object& obj) {
  require_device();
  py::object cap_obj;
  if (py::hasattr(obj, "__dlpack__")) {
    try {
      cap_obj = obj.attr("__dlpack__")(py::arg("stream") = 1);
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      cap_obj = obj.attr("__dlpack__")();
    }
  } else if (PyCapsule_CheckExact(obj.ptr())) {
    cap_obj = obj;
  } else if (py::hasattr(obj, "__cuda_array_interface__")) {
    return tensor_from_cai(obj);
  } else {
    fail_type("fastconv.cuda.Tensor.from_dlpack: expected an object with __dlpack__, a DLPack "
              "capsule or an object with __cuda_array_interface__");
  }
  PyObject* cap = cap_obj.ptr();
  if (!PyCapsule_IsValid(cap, "dltensor"))
    fail_type("fastconv.cuda.Tensor.from_dlpack: expected an unconsumed 'dltensor' capsule");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
  const DLTensor& dl = managed->dl_tensor;
  if (dl.device.device_type != kDLCUDA)
    fail("fastconv.cuda.Tensor.from_dlpack: the tensor is not in CUDA device memory (DLPack "
         "device type ", dl.device.device_type, "); use Tensor.from_numpy for host arrays");
  if (dl.device.device_id != current_device())
    fail("fastconv.cuda.Tensor.from_dlpack: the tensor is on CUDA device ", dl.device.device_id,
         " but fastconv runs on device ", current_device());
  DType dtype;
  if (dl.dtype.code == kDLFloat && dl.dtype.bits == 32 && dl.dtype.lanes == 1) dtype = DType::Float32;
  else if (dl.dtype.code == kDLInt && dl.dtype.bits == 64 && dl.dtype.lanes == 1) dtype = DType::Int64;
  else fail_type("fastconv.cuda.Tensor.from_dlpack: dtype must be float32 or int64");
  std::vector<int64_t> shape(dl.shape, dl.shape + dl.ndim);
  checked_numel("fastconv.cuda.Tensor.from_dlpack", "the tensor", shape);
  if (dl.strides) {
    int64_t expect = 1;
    for (int i = dl.ndim; i-- > 0;) {
      if (shape[size_t(i)] != 1 && dl.strides[i] != expect)
        fail("fastconv.cuda.Tensor.from_dlpack: the tensor must be C-contiguous (call "
             ".contiguous() first)");
      expect *= shape[size_t(i)];
    }
  }
  PyCapsule_SetName(cap, "used_dltensor");  // we own it now
  Tensor t;
  t.storage = std::make_shared<Storage>();
  t.storage->ptr = static_cast<char*>(dl.data) + dl.byte_offset;
  t.storage->release = [managed] {
    if (managed->deleter) managed->deleter(managed);
  };
  t.data = t.storage->ptr;
  t.shape = shape;
  t.dtype = dtype;
  t.device = dl.device.device_id;
  return t;
}

// ---------------------------------------------------------------- argument checks for the ops
const Tensor& want_f32(const char* op, const char* name, const Tensor& t) {
  if (t.dtype != DType::Float32)
    fail_type(op, ": ", name, " must be a float32 tensor, got ", dtype_name(t.dtype));
  return t;
}

void want_ndim(const char* op, const char* name, const Tensor& t, int ndim, const char* dims) {
  if (t.ndim() != ndim)
    fail(op, ": ", name, " must be ", ndim, "-D ", dims, ", got shape ", shape_str(t.shape));
}

using Pair = std::array<int64_t, 2>;
using Pads = std::array<int64_t, 4>;  // top, left, bottom, right

void check_geometry(const char* op, const Pair& stride, const Pads& pad, const Pair* dil) {
  for (int i = 0; i < 2; ++i) {
    if (stride[size_t(i)] < 1)
      fail(op, ": stride must be >= 1, got (", stride[0], ", ", stride[1], ")");
    if (dil && (*dil)[size_t(i)] < 1)
      fail(op, ": dilation must be >= 1, got (", (*dil)[0], ", ", (*dil)[1], ")");
  }
  for (int i = 0; i < 4; ++i)
    if (pad[size_t(i)] < 0)
      fail(op, ": padding must be >= 0, got (", pad[0], ", ", pad[1], ", ", pad[2], ", ",
           pad[3], ")");
}

// x (N, C, H, W) and w (K, C, R, S) -> the parameters of y (N, K, P, Q).
Conv2dParams conv_params(const char* op, const std::vector<int64_t>& x,
                         const std::vector<int64_t>& w, const Pair& stride, const Pads& pad,
                         const Pair& dil) {
  if (x.size() != 4) fail(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  if (w.size() != 4) fail(op, ": w must be 4-D (K, C, R, S), got shape ", shape_str(w));
  check_geometry(op, stride, pad, &dil);
  checked_numel(op, "x", x);
  checked_numel(op, "w", w);
  for (int64_t d : x)
    if (d < 1) fail(op, ": x must have no empty dimension, got shape ", shape_str(x));
  for (int64_t d : w)
    if (d < 1) fail(op, ": w must have no empty dimension, got shape ", shape_str(w));
  if (w[1] != x[1])
    fail(op, ": w has ", w[1], " input channels but x has ", x[1], " (x.shape=", shape_str(x),
         ", w.shape=", shape_str(w), ")");
  Conv2dParams p{};
  p.N = x[0]; p.C = x[1]; p.H = x[2]; p.W = x[3];
  p.K = w[0]; p.R = w[2]; p.S = w[3];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_top = pad[0]; p.pad_left = pad[1]; p.pad_bottom = pad[2]; p.pad_right = pad[3];
  p.dil_h = dil[0]; p.dil_w = dil[1];
  const int64_t eh = p.H + p.pad_top + p.pad_bottom - p.dil_h * (p.R - 1) - 1;
  const int64_t ew = p.W + p.pad_left + p.pad_right - p.dil_w * (p.S - 1) - 1;
  if (eh < 0 || ew < 0)
    fail(op, ": the (dilated) filter ", p.dil_h * (p.R - 1) + 1, "x", p.dil_w * (p.S - 1) + 1,
         " is larger than the padded input ", p.H + p.pad_top + p.pad_bottom, "x",
         p.W + p.pad_left + p.pad_right, " (x.shape=", shape_str(x), ", w.shape=", shape_str(w), ")");
  p.P = eh / p.stride_h + 1;
  p.Q = ew / p.stride_w + 1;
  checked_numel(op, "y", {p.N, p.K, p.P, p.Q});
  return p;
}

Pool2dParams pool_params(const char* op, const std::vector<int64_t>& x, const Pair& kernel,
                         const Pair& stride, const Pads& pad, bool count_include_pad) {
  if (x.size() != 4) fail(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  checked_numel(op, "x", x);
  for (int64_t d : x)
    if (d < 1) fail(op, ": x must have no empty dimension, got shape ", shape_str(x));
  if (kernel[0] < 1 || kernel[1] < 1)
    fail(op, ": kernel must be >= 1, got (", kernel[0], ", ", kernel[1], ")");
  check_geometry(op, stride, pad, nullptr);
  if (pad[0] > kernel[0] / 2 || pad[2] > kernel[0] / 2 || pad[1] > kernel[1] / 2 ||
      pad[3] > kernel[1] / 2)
    fail(op, ": padding (", pad[0], ", ", pad[1], ", ", pad[2], ", ", pad[3],
         ") must be at most half the window (", kernel[0], ", ", kernel[1], ")");
  Pool2dParams p{};
  p.N = x[0]; p.C = x[1]; p.H = x[2]; p.W = x[3];
  p.kh = kernel[0]; p.kw = kernel[1];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_top = pad[0]; p.pad_left = pad[1]; p.pad_bottom = pad[2]; p.pad_right = pad[3];
  const int64_t eh = p.H + p.pad_top + p.pad_bottom - p.kh;
  const int64_t ew = p.W + p.pad_left + p.pad_right - p.kw;
  if (eh < 0 || ew < 0)
    fail(op, ": the window (", p.kh, ", ", p.kw, ") is larger than the padded input ",
         p.H + p.pad_top + p.pad_bottom, "x", p.W + p.pad_left + p.pad_right,
         " (x.shape=", shape_str(x), ")");
  p.P = eh / p.stride_h + 1;
  p.Q = ew / p.stride_w + 1;
  p.count_include_pad = count_include_pad;
  return p;
}

std::vector<int64_t> shape_arg(const char* op, const char* name, const std::vector<int64_t>& s,
                               size_t ndim) {
  if (s.size() != ndim) fail(op, ": ", name, " must have ", ndim, " entries, got ", shape_str(s));
  return s;
}

Activation act_arg(const char* op, int act) {
  if (act < 0 || act > 3)
    fail(op, ": act must be 0 (none), 1 (relu), 2 (tanh) or 3 (sigmoid), got ", act);
  return static_cast<Activation>(act);
}

// Labels as an int64 device tensor: a Tensor is used as is (the kernel flags bad labels), a
// NumPy integer array is range-checked here and then uploaded.
Tensor labels_arg(const char* op, const py::object& labels, int64_t N, int64_t C) {
  Tensor t;
  if (py::isinstance<Tensor>(labels)) {
    t = labels.cast<Tensor>();
    if (t.dtype != DType::Int64)
      fail_type(op, ": labels must be an int64 tensor, got ", dtype_name(t.dtype));
  } else {
    py::array any = py::array::ensure(labels);
    if (!any || (any.dtype().kind() != 'i' && any.dtype().kind() != 'u'))
      fail_type(op, ": labels must be an integer array or an int64 fastconv.cuda.Tensor");
    auto arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(any);
    if (!arr) throw py::error_already_set();
    const int64_t* l = arr.data();
    for (py::ssize_t i = 0; i < arr.size(); ++i)
      if (l[i] < 0 || l[i] >= C)
        fail(op, ": labels must lie in [0, ", C, "), got ", l[i], " at index ", i);
    t = tensor_from_numpy(arr);
  }
  if (t.ndim() != 1 || t.dim(0) != N)
    fail(op, ": labels must have shape (", N, ",) to match logits, got ", shape_str(t.shape));
  return t;
}

}  // namespace
}  // namespace cuda
}  // namespace fastconv

using fastconv::Activation;
using fastconv::Conv2dParams;
using fastconv::Pool2dParams;
using namespace fastconv::cuda;

PYBIND11_MODULE(_cuda, m) {
  m.doc() =
      "fastconv's CUDA backend: a device Tensor type and the ops of fastconv._core on an "
      "NVIDIA GPU.\n\nImports on machines without a GPU or driver; then is_available() is "
      "False and every op raises RuntimeError.";

  // ---------------------------------------------------------------- runtime
  m.def("is_available", &device_available,
        "True when a CUDA device is usable (never raises; any CUDA error counts as no GPU).");
  m.def("device_count", &device_count, "Number of CUDA devices (0 on any error).");
  m.def("device_name", &device_name, py::arg("device") = 0,
        "Name of CUDA device `device`, '' when there is none.");
  m.def("why_unavailable", [] {
    return device_available() ? std::string() : why_unavailable();
  }, "Why no GPU is usable (the CUDA runtime's error string); '' when one is.");
  m.def("synchronize", [] {
    py::gil_scoped_release nogil;
    synchronize();
  }, "Wait until every queued kernel and copy has finished (cudaDeviceSynchronize).");
  m.def("empty_cache", &empty_cache,
        "Give every cached free block of the caching allocator back to the driver.");
  m.def("memory_stats", [] {
    const AllocatorStats s = allocator_stats();
    py::dict d;
    d["allocated_bytes"] = s.allocated_bytes;
    d["cached_bytes"] = s.cached_bytes;
    d["cuda_mallocs"] = s.cuda_mallocs;
    d["cache_hits"] = s.cache_hits;
    return d;
  }, "The caching allocator's counters: allocated_bytes, cached_bytes, cuda_mallocs, "
     "cache_hits.");
  m.def("set_allow_tf32", &set_allow_tf32, py::arg("allow"),
        "Allow TF32 tensor cores (WMMA m16n16k8) in conv2d, linear and sgemm (default False: "
        "exact FP32 FMAs). TF32 keeps 10 mantissa bits; expect relative errors near 1e-3.");
  m.def("get_allow_tf32", &allow_tf32, "Whether TF32 was allowed with set_allow_tf32.");

  // ---------------------------------------------------------------- Tensor
  py::class_<Tensor>(m, "Tensor", R"doc(
A dense, C-contiguous float32 or int64 array in GPU memory.

Tensor(array) and Tensor.from_numpy(array) copy a NumPy array (float -> float32, integer ->
int64) to the GPU; t.numpy() copies back. Memory comes from fastconv's caching allocator.
Share without copies with __cuda_array_interface__ (v3) and __dlpack__ (torch.from_dlpack(t),
cupy.from_dlpack(t)); Tensor.from_dlpack(obj) wraps a producer's CUDA memory without a copy.
)doc")
      .def(py::init(&tensor_from_numpy), py::arg("array"),
           "Copy a NumPy array (or array-like, or another Tensor) to the GPU.")
      .def_static("from_numpy", &tensor_from_numpy, py::arg("array"),
                  "Copy a NumPy array to the GPU: float arrays become float32, integer arrays "
                  "int64.")
      .def_static("empty", [](const std::vector<int64_t>& shape, const py::object& dtype) {
          return Tensor::empty(shape, parse_dtype(dtype), "fastconv.cuda.Tensor.empty");
        }, py::arg("shape"), py::arg("dtype") = "float32",
        "An uninitialised tensor of the given shape and dtype (float32 or int64).")
      .def_static("zeros", [](const std::vector<int64_t>& shape, const py::object& dtype) {
          Tensor t = Tensor::empty(shape, parse_dtype(dtype), "fastconv.cuda.Tensor.zeros");
          fill_zero(t.data, t.nbytes());
          return t;
        }, py::arg("shape"), py::arg("dtype") = "float32",
        "A tensor of zeros of the given shape and dtype (float32 or int64).")
      .def_static("from_dlpack", &tensor_from_dlpack, py::arg("obj"),
                  "Wrap a CUDA array from any DLPack producer (torch, cupy, jax) without a "
                  "copy; objects with only __cuda_array_interface__ are copied.")
      .def_static("from_cuda_array_interface", &tensor_from_cai, py::arg("obj"),
                  "Copy an object exposing __cuda_array_interface__ into a new Tensor.")
      .def("numpy", &tensor_to_numpy, "Copy to a new NumPy array (waits for queued kernels).")
      .def("copy", [](const Tensor& t) { return tensor_from_numpy(py::cast(t)); },
           "A new tensor with a device copy of the data.")
      .def("reshape", [](const Tensor& t, py::args args) {
          std::vector<int64_t> shape;
          if (args.size() == 1 && !py::isinstance<py::int_>(args[0]))
            shape = args[0].cast<std::vector<int64_t>>();
          else
            shape = args.cast<std::vector<int64_t>>();
          return tensor_reshape(t, shape);
        }, "A view with a new shape over the same memory (one dimension may be -1).")
      .def_property_readonly("shape", [](const Tensor& t) { return shape_tuple(t.shape); },
                             "The shape, a tuple of ints.")
      .def_property_readonly("dtype", [](const Tensor& t) {
          return t.dtype == DType::Float32 ? py::dtype::of<float>() : py::dtype::of<int64_t>();
        }, "The NumPy dtype: float32 or int64.")
      .def_property_readonly("ndim", &Tensor::ndim, "Number of dimensions.")
      .def_property_readonly("size", &Tensor::numel, "Number of elements.")
      .def_property_readonly("nbytes", &Tensor::nbytes, "Size of the data in bytes.")
      .def_property_readonly("device", [](const Tensor&) { return std::string("cuda"); },
                             "Always 'cuda'.")
      .def_property_readonly("device_index", [](const Tensor& t) { return t.device; },
                             "The CUDA device the data lives on.")
      .def_property_readonly("data_ptr", [](const Tensor& t) {
          return reinterpret_cast<uintptr_t>(t.data);
        }, "The device address of the first element.")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface,
                             "Numba's CUDA array interface, version 3.")
      .def("__dlpack__", [](const Tensor& t, const py::object& stream, const py::object&,
                            const py::object&, const py::object& copy) {
          if (!copy.is_none() && copy.cast<bool>())
            return tensor_dlpack(tensor_from_numpy(py::cast(t)), stream);
          return tensor_dlpack(t, stream);
        }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
        py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
        "Export as a DLPack capsule ('dltensor', device kDLCUDA) that keeps this memory alive.")
      .def("__dlpack_device__", [](const Tensor& t) {
          return py::make_tuple(int(kDLCUDA), t.device);
        }, "(2, device): DLPack's kDLCUDA and the device index.")
      .def("__len__", [](const Tensor& t) {
          if (t.shape.empty()) throw py::type_error("len() of a 0-d tensor");
          return t.shape[0];
        })
      .def("__repr__", [](const Tensor& t) {
          return "fastconv.cuda.Tensor(shape=" + shape_str(t.shape) + ", dtype=" +
                 dtype_name(t.dtype) + ", device='cuda:" + std::to_string(t.device) + "')";
        });

  // ---------------------------------------------------------------- ops (same as _core)
  using OptT = std::optional<Tensor>;

  m.def("conv2d_forward", [](const Tensor& x, const Tensor& w, const OptT& b, Pair stride,
                             Pads pad, Pair dilation, int act) {
    const char* op = "conv2d_forward";
    require_device();
    want_f32(op, "x", x); want_f32(op, "w", w);
    const Conv2dParams p = conv_params(op, x.shape, w.shape, stride, pad, dilation);
    const Activation a = act_arg(op, act);
    const float* bias = nullptr;
    if (b) {
      want_f32(op, "b", *b);
      if (b->ndim() != 1 || b->dim(0) != p.K)
        fail(op, ": b must have shape (", p.K, ",) for ", p.K, " filters, got ", shape_str(b->shape));
      bias = b->cf();
    }
    Tensor y = empty_f32({p.N, p.K, p.P, p.Q}, op);
    py::gil_scoped_release nogil;
    conv2d_forward(x.cf(), w.cf(), bias, y.f(), p, a);
    return y;
  }, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("stride") = Pair{1, 1},
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1}, py::arg("act") = 0,
     "y (N,K,P,Q) = act(conv(x (N,C,H,W), w (K,C,R,S)) + b (K)); pad is (top, left, bottom, "
     "right); act 0 none, 1 relu, 2 tanh, 3 sigmoid.");

  m.def("conv2d_backward_input", [](const Tensor& dy, const Tensor& w,
                                    const std::vector<int64_t>& x_shape, Pair stride, Pads pad,
                                    Pair dilation) {
    const char* op = "conv2d_backward_input";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "w", w);
    const Conv2dParams p =
        conv_params(op, shape_arg(op, "x_shape", x_shape, 4), w.shape, stride, pad, dilation);
    const std::vector<int64_t> want{p.N, p.K, p.P, p.Q};
    if (dy.shape != want)
      fail(op, ": dy must have shape ", shape_str(want), " for x_shape ", shape_str(x_shape),
           " and w.shape ", shape_str(w.shape), ", got ", shape_str(dy.shape));
    Tensor dx = empty_f32(x_shape, op);
    py::gil_scoped_release nogil;
    conv2d_backward_input(dy.cf(), w.cf(), dx.f(), p);
    return dx;
  }, py::arg("dy"), py::arg("w"), py::arg("x_shape"), py::arg("stride") = Pair{1, 1},
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
     "dx (N,C,H,W) from dy (N,K,P,Q) and w (K,C,R,S).");

  m.def("conv2d_backward_weight", [](const Tensor& dy, const Tensor& x,
                                     const std::vector<int64_t>& w_shape, Pair stride, Pads pad,
                                     Pair dilation) {
    const char* op = "conv2d_backward_weight";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "x", x);
    const Conv2dParams p =
        conv_params(op, x.shape, shape_arg(op, "w_shape", w_shape, 4), stride, pad, dilation);
    const std::vector<int64_t> want{p.N, p.K, p.P, p.Q};
    if (dy.shape != want)
      fail(op, ": dy must have shape ", shape_str(want), " for x.shape ", shape_str(x.shape),
           " and w_shape ", shape_str(w_shape), ", got ", shape_str(dy.shape));
    Tensor dw = empty_f32(w_shape, op);
    py::gil_scoped_release nogil;
    conv2d_backward_weight(dy.cf(), x.cf(), dw.f(), p);
    return dw;
  }, py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride") = Pair{1, 1},
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
     "dw (K,C,R,S) from dy (N,K,P,Q) and x (N,C,H,W), summed over the batch.");

  m.def("conv2d_backward_bias", [](const Tensor& dy) {
    const char* op = "conv2d_backward_bias";
    require_device();
    want_f32(op, "dy", dy);
    want_ndim(op, "dy", dy, 4, "(N, K, P, Q)");
    Tensor db = empty_f32({dy.dim(1)}, op);
    py::gil_scoped_release nogil;
    conv2d_backward_bias(dy.cf(), db.f(), dy.dim(0), dy.dim(1), dy.dim(2) * dy.dim(3));
    return db;
  }, py::arg("dy"), "db (K) = sum of dy (N,K,P,Q) over N, P, Q.");

  m.def("max_pool2d_forward", [](const Tensor& x, Pair kernel, Pair stride, Pads pad) {
    const char* op = "max_pool2d_forward";
    require_device();
    want_f32(op, "x", x);
    const Pool2dParams p = pool_params(op, x.shape, kernel, stride, pad, true);
    Tensor y = empty_f32({p.N, p.C, p.P, p.Q}, op);
    py::gil_scoped_release nogil;
    max_pool2d_forward(x.cf(), y.f(), p);
    return y;
  }, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("pad") = Pads{0, 0, 0, 0},
     "y (N,C,P,Q): the maximum of each window of x (N,C,H,W); padding never wins.");

  m.def("max_pool2d_backward", [](const Tensor& dy, const Tensor& x, Pair kernel, Pair stride,
                                  Pads pad) {
    const char* op = "max_pool2d_backward";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "x", x);
    const Pool2dParams p = pool_params(op, x.shape, kernel, stride, pad, true);
    const std::vector<int64_t> want{p.N, p.C, p.P, p.Q};
    if (dy.shape != want)
      fail(op, ": dy must have shape ", shape_str(want), " for x.shape ", shape_str(x.shape),
           ", got ", shape_str(dy.shape));
    Tensor dx = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    max_pool2d_backward(dy.cf(), x.cf(), dx.f(), p);
    return dx;
  }, py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("stride"),
     py::arg("pad") = Pads{0, 0, 0, 0},
     "dx (N,C,H,W): each dy routed to the first maximum of its window.");

  m.def("avg_pool2d_forward", [](const Tensor& x, Pair kernel, Pair stride, Pads pad,
                                 bool count_include_pad) {
    const char* op = "avg_pool2d_forward";
    require_device();
    want_f32(op, "x", x);
    const Pool2dParams p = pool_params(op, x.shape, kernel, stride, pad, count_include_pad);
    Tensor y = empty_f32({p.N, p.C, p.P, p.Q}, op);
    py::gil_scoped_release nogil;
    avg_pool2d_forward(x.cf(), y.f(), p);
    return y;
  }, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("pad") = Pads{0, 0, 0, 0},
     py::arg("count_include_pad") = true,
     "y (N,C,P,Q): the mean of each window of x (N,C,H,W).");

  m.def("avg_pool2d_backward", [](const Tensor& dy, const std::vector<int64_t>& x_shape,
                                  Pair kernel, Pair stride, Pads pad, bool count_include_pad) {
    const char* op = "avg_pool2d_backward";
    require_device();
    want_f32(op, "dy", dy);
    const Pool2dParams p = pool_params(op, shape_arg(op, "x_shape", x_shape, 4), kernel, stride,
                                       pad, count_include_pad);
    const std::vector<int64_t> want{p.N, p.C, p.P, p.Q};
    if (dy.shape != want)
      fail(op, ": dy must have shape ", shape_str(want), " for x_shape ", shape_str(x_shape),
           ", got ", shape_str(dy.shape));
    Tensor dx = empty_f32(x_shape, op);
    py::gil_scoped_release nogil;
    avg_pool2d_backward(dy.cf(), dx.f(), p);
    return dx;
  }, py::arg("dy"), py::arg("x_shape"), py::arg("kernel"), py::arg("stride"),
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("count_include_pad") = true,
     "dx (N,C,H,W): each dy shared evenly over its window.");

  m.def("activation_forward", [](const Tensor& x, int act) {
    const char* op = "activation_forward";
    require_device();
    want_f32(op, "x", x);
    const Activation a = act_arg(op, act);
    Tensor y = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    activation_forward(a, x.cf(), y.f(), x.numel());
    return y;
  }, py::arg("x"), py::arg("act"), "y = act(x) elementwise; act 1 relu, 2 tanh, 3 sigmoid.");

  m.def("activation_backward", [](const Tensor& dy, const Tensor& y, int act) {
    const char* op = "activation_backward";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "y", y);
    const Activation a = act_arg(op, act);
    if (dy.shape != y.shape)
      fail(op, ": dy and y must have the same shape, got ", shape_str(dy.shape), " and ",
           shape_str(y.shape));
    Tensor dx = empty_f32(y.shape, op);
    py::gil_scoped_release nogil;
    activation_backward(a, dy.cf(), y.cf(), dx.f(), y.numel());
    return dx;
  }, py::arg("dy"), py::arg("y"), py::arg("act"),
     "dx = dy * act'(x), written with the forward output y.");

  m.def("softmax", [](const Tensor& x) {
    const char* op = "softmax";
    require_device();
    want_f32(op, "x", x);
    if (x.ndim() < 1) fail(op, ": x must have at least one dimension");
    const int64_t cols = x.shape.back();
    const int64_t rows = cols ? x.numel() / cols : 0;
    Tensor y = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    softmax_forward(x.cf(), y.f(), rows, cols);
    return y;
  }, py::arg("x"), "Softmax over the last axis (max-subtracted).");

  m.def("softmax_cross_entropy", [](const Tensor& logits, const py::object& labels) {
    const char* op = "softmax_cross_entropy";
    require_device();
    want_f32(op, "logits", logits);
    want_ndim(op, "logits", logits, 2, "(N, C)");
    const int64_t N = logits.dim(0), C = logits.dim(1);
    if (N < 1 || C < 1) fail(op, ": logits must be non-empty, got shape ", shape_str(logits.shape));
    const Tensor lab = labels_arg(op, labels, N, C);
    Tensor dlogits = empty_f32(logits.shape, op);
    float loss;
    {
      py::gil_scoped_release nogil;
      loss = softmax_cross_entropy(logits.cf(), static_cast<const int64_t*>(lab.data),
                                   dlogits.f(), N, C);
    }
    return py::make_tuple(loss, dlogits);
  }, py::arg("logits"), py::arg("labels"),
     "(mean loss, dlogits = (softmax(logits) - onehot(labels)) / N) for logits (N, C) and "
     "labels (N) int64 (a Tensor or a NumPy integer array).");

  m.def("linear_forward", [](const Tensor& x, const Tensor& w, const OptT& b, int act) {
    const char* op = "linear_forward";
    require_device();
    want_f32(op, "x", x); want_f32(op, "w", w);
    want_ndim(op, "x", x, 2, "(N, I)");
    want_ndim(op, "w", w, 2, "(O, I)");
    const Activation a = act_arg(op, act);
    const int64_t N = x.dim(0), I = x.dim(1), O = w.dim(0);
    if (w.dim(1) != I)
      fail(op, ": w has ", w.dim(1), " inputs but x has ", I, " features (x.shape=",
           shape_str(x.shape), ", w.shape=", shape_str(w.shape), ")");
    const float* bias = nullptr;
    if (b) {
      want_f32(op, "b", *b);
      if (b->ndim() != 1 || b->dim(0) != O)
        fail(op, ": b must have shape (", O, ",), got ", shape_str(b->shape));
      bias = b->cf();
    }
    Tensor y = empty_f32({N, O}, op);
    py::gil_scoped_release nogil;
    linear_forward(x.cf(), w.cf(), bias, y.f(), N, I, O, a);
    return y;
  }, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("act") = 0,
     "y (N,O) = act(x (N,I) w^T + b), w (O,I).");

  m.def("linear_backward", [](const Tensor& dy, const Tensor& x, const Tensor& w) {
    const char* op = "linear_backward";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "x", x); want_f32(op, "w", w);
    want_ndim(op, "dy", dy, 2, "(N, O)");
    want_ndim(op, "x", x, 2, "(N, I)");
    want_ndim(op, "w", w, 2, "(O, I)");
    const int64_t N = x.dim(0), I = x.dim(1), O = w.dim(0);
    if (w.dim(1) != I || dy.dim(0) != N || dy.dim(1) != O)
      fail(op, ": shapes do not agree: dy ", shape_str(dy.shape), ", x ", shape_str(x.shape),
           ", w ", shape_str(w.shape), " (want dy (N, O), x (N, I), w (O, I))");
    Tensor dx = empty_f32({N, I}, op), dw = empty_f32({O, I}, op), db = empty_f32({O}, op);
    {
      py::gil_scoped_release nogil;
      linear_backward(dy.cf(), x.cf(), w.cf(), dx.f(), dw.f(), db.f(), N, I, O);
    }
    return py::make_tuple(dx, dw, db);
  }, py::arg("dy"), py::arg("x"), py::arg("w"),
     "(dx (N,I) = dy w, dw (O,I) = dy^T x, db (O) = sum of dy over N).");

  m.def("sgemm", [](const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
    const char* op = "sgemm";
    require_device();
    want_f32(op, "a", a); want_f32(op, "b", b);
    want_ndim(op, "a", a, 2, "(M, K)");
    want_ndim(op, "b", b, 2, "(K, N)");
    const int64_t M = trans_a ? a.dim(1) : a.dim(0), K = trans_a ? a.dim(0) : a.dim(1);
    const int64_t Kb = trans_b ? b.dim(1) : b.dim(0), N = trans_b ? b.dim(0) : b.dim(1);
    if (K != Kb)
      fail(op, ": inner dimensions differ: op(a) is (", M, ", ", K, ") and op(b) is (", Kb,
           ", ", N, ") (a.shape=", shape_str(a.shape), ", b.shape=", shape_str(b.shape), ")");
    Tensor c = empty_f32({M, N}, op);
    py::gil_scoped_release nogil;
    if (K == 0) {
      fill_zero(c.data, c.nbytes());
    } else {
      sgemm(trans_a, trans_b, M, N, K, a.cf(), a.dim(1), b.cf(), b.dim(1), c.f(), N);
    }
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     "c (M,N) = op(a) op(b), op transposing where asked.");
}
