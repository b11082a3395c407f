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

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/shapes.h"
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
template <class... Args>
[[noreturn]] void fail_type(const Args&... args) {
  throw py::type_error(concat(args...));
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

// The output of an op: `out` when given (float32, exactly `shape`; written in place, so a
// training loop can aim gradients straight at its flat gradient buffer), else a new tensor.
Tensor out_tensor(const std::optional<Tensor>& out, const std::vector<int64_t>& shape,
                  const char* op, const char* name) {
  if (!out) return empty_f32(shape, op);
  want_f32(op, name, *out);
  if (out->shape != shape)
    fail(op, ": ", name, " must have shape ", shape_str(shape), ", got ", shape_str(out->shape));
  return *out;
}

// Rows [start, stop) of t (along the first axis) as a view of the same memory.
Tensor tensor_slice(const Tensor& t, int64_t start, int64_t stop) {
  if (t.ndim() < 1) fail("Tensor.slice: a 0-D tensor has no rows");
  const int64_t rows = t.dim(0);
  if (start < 0 || stop < start || stop > rows)
    fail("Tensor.slice: need 0 <= start <= stop <= ", rows, ", got start=", start, ", stop=", stop);
  Tensor v = t;
  const int64_t row_elems = rows ? t.numel() / rows : 0;
  v.data = static_cast<char*>(t.data) + size_t(start * row_elems) * itemsize(t.dtype);
  v.shape[0] = stop - start;
  return v;
}

// Copy src (a NumPy array or a Tensor of the same shape and dtype) into t, in place.
void tensor_copy_from(Tensor& t, const py::object& src) {
  const char* op = "Tensor.copy_";
  if (py::isinstance<Tensor>(src)) {
    const Tensor& s = src.cast<const Tensor&>();
    if (s.shape != t.shape || s.dtype != t.dtype)
      fail(op, ": src has shape ", shape_str(s.shape), " ", dtype_name(s.dtype), ", want ",
           shape_str(t.shape), " ", dtype_name(t.dtype));
    copy_device_to_device(t.data, s.data, t.nbytes());
    return;
  }
  py::array arr = t.dtype == DType::Float32
      ? py::array(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(src))
      : py::array(py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(src));
  if (!arr) fail_type(op, ": src must be a Tensor or an array-like");
  std::vector<int64_t> shape(arr.shape(), arr.shape() + arr.ndim());
  if (shape != t.shape)
    fail(op, ": src has shape ", shape_str(shape), ", want ", shape_str(t.shape));
  const void* data = arr.data();
  const size_t bytes = t.nbytes();
  py::gil_scoped_release nogil;
  copy_host_to_device(t.data, data, bytes);
}

const Tensor& want_i64(const char* op, const char* name, const Tensor& t) {
  if (t.dtype != DType::Int64)
    fail_type(op, ": ", name, " must be an int64 tensor, got ", dtype_name(t.dtype));
  return t;
}

void want_numel(const char* op, const char* name, const Tensor& t, int64_t n) {
  if (t.numel() != n)
    fail(op, ": ", name, " must have ", n, " elements, got shape ", shape_str(t.shape));
}

std::vector<int64_t> shape_arg(const char* op, const char* name, const std::vector<int64_t>& s,
                               size_t ndim) {
  if (s.size() != ndim) fail(op, ": ", name, " must have ", ndim, " entries, got ", shape_str(s));
  return s;
}

Activation act_arg(const char* op, int act) {
  if (act < 0 || act >= kActivationCount)
    fail(op, ": act must be 0 (none), 1 (relu), 2 (tanh), 3 (sigmoid), 4 (leaky_relu), 5 (elu), "
         "6 (gelu) or 7 (gelu_tanh), got ", act);
  return static_cast<Activation>(act);
}

float alpha_arg(const char* op, Activation a, const std::optional<double>& alpha) {
  return activation_alpha(op, a, alpha.has_value(), alpha.value_or(0.0));
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
using fastconv::Pair;
using fastconv::Pads;
using fastconv::fail;
using fastconv::shape_str;
using fastconv::make_conv_params;
using fastconv::make_pool_params;
using fastconv::checked_numel;
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
      .def("slice", &tensor_slice, py::arg("start"), py::arg("stop"),
           "Rows [start, stop) along the first axis, as a view of the same memory.")
      .def("copy_", [](Tensor& t, const py::object& src) { tensor_copy_from(t, src); return t; },
           py::arg("src"),
           "Copy src (a NumPy array or a Tensor of this shape) into this tensor, in place.")
      .def("zero_", [](Tensor& t) { fill_zero(t.data, t.nbytes()); return t; },
           "Set every element to zero, in place (queued on the GPU).")
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
                             Pads pad, Pair dilation, int act, std::optional<double> alpha) {
    const char* op = "conv2d_forward";
    require_device();
    want_f32(op, "x", x); want_f32(op, "w", w);
    const Conv2dParams p = make_conv_params(op, x.shape, w.shape, stride, pad, dilation);
    const Activation a = act_arg(op, act);
    const float al = alpha_arg(op, a, alpha);
    const float* bias = nullptr;
    if (b) {
      want_f32(op, "b", *b);
      if (b->ndim() != 1 || b->dim(0) != p.K)
        fail(op, ": b must have shape (", p.K, ",) for ", p.K, " filters, got ", shape_str(b->shape));
      bias = b->cf();
    }
    Tensor y = empty_f32({p.N, p.K, p.P, p.Q}, op);
    py::gil_scoped_release nogil;
    conv2d_forward(x.cf(), w.cf(), bias, y.f(), p, a, al);
    return y;
  }, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("stride") = Pair{1, 1},
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1}, py::arg("act") = 0,
     py::arg("alpha") = py::none(),
     "y (N,K,P,Q) = act(conv(x (N,C,H,W), w (K,C,R,S)) + b (K)); pad is (top, left, bottom, "
     "right); act 0 none, 1 relu, 2 tanh, 3 sigmoid, 4 leaky_relu, 5 elu, 6 gelu, 7 gelu_tanh; "
     "alpha the activation's parameter (None: its default).");

  m.def("conv2d_backward_input", [](const Tensor& dy, const Tensor& w,
                                    const std::vector<int64_t>& x_shape, Pair stride, Pads pad,
                                    Pair dilation) {
    const char* op = "conv2d_backward_input";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "w", w);
    const Conv2dParams p =
        make_conv_params(op, shape_arg(op, "x_shape", x_shape, 4), w.shape, stride, pad, dilation);
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
                                     Pair dilation, const std::optional<Tensor>& out) {
    const char* op = "conv2d_backward_weight";
    require_device();
    want_f32(op, "dy", dy); want_f32(op, "x", x);
    const Conv2dParams p =
        make_conv_params(op, x.shape, shape_arg(op, "w_shape", w_shape, 4), stride, pad, dilation);
    const std::vector<int64_t> want{p.N, p.K, p.P, p.Q};
    if (dy.shape != want)
      fail(op, ": dy must have shape ", shape_str(want), " for x.shape ", shape_str(x.shape),
           " and w_shape ", shape_str(w_shape), ", got ", shape_str(dy.shape));
    Tensor dw = out_tensor(out, w_shape, op, "out");
    py::gil_scoped_release nogil;
    conv2d_backward_weight(dy.cf(), x.cf(), dw.f(), p);
    return dw;
  }, py::arg("dy"), py::arg("x"), py::arg("w_shape"), py::arg("stride") = Pair{1, 1},
     py::arg("pad") = Pads{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
     py::arg("out") = py::none(),
     "dw (K,C,R,S) from dy (N,K,P,Q) and x (N,C,H,W), summed over the batch (into `out` if "
     "given).");

  m.def("conv2d_backward_bias", [](const Tensor& dy, const std::optional<Tensor>& out) {
    const char* op = "conv2d_backward_bias";
    require_device();
    want_f32(op, "dy", dy);
    want_ndim(op, "dy", dy, 4, "(N, K, P, Q)");
    Tensor db = out_tensor(out, {dy.dim(1)}, op, "out");
    py::gil_scoped_release nogil;
    conv2d_backward_bias(dy.cf(), db.f(), dy.dim(0), dy.dim(1), dy.dim(2) * dy.dim(3));
    return db;
  }, py::arg("dy"), py::arg("out") = py::none(),
     "db (K) = sum of dy (N,K,P,Q) over N, P, Q (into `out` if given).");

  m.def("max_pool2d_forward", [](const Tensor& x, Pair kernel, Pair stride, Pads pad) {
    const char* op = "max_pool2d_forward";
    require_device();
    want_f32(op, "x", x);
    const Pool2dParams p = make_pool_params(op, x.shape, kernel, stride, pad, true);
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
    const Pool2dParams p = make_pool_params(op, x.shape, kernel, stride, pad, true);
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
    const Pool2dParams p = make_pool_params(op, x.shape, kernel, stride, pad, count_include_pad);
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
    const Pool2dParams p = make_pool_params(op, shape_arg(op, "x_shape", x_shape, 4), kernel, stride,
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

  m.def("activation_forward", [](const Tensor& x, int act, std::optional<double> alpha) {
    const char* op = "activation_forward";
    require_device();
    want_f32(op, "x", x);
    const Activation a = act_arg(op, act);
    const float al = alpha_arg(op, a, alpha);
    Tensor y = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    activation_forward(a, x.cf(), y.f(), x.numel(), al);
    return y;
  }, py::arg("x"), py::arg("act"), py::arg("alpha") = py::none(),
     "y = act(x) elementwise; act as for conv2d_forward, alpha its parameter.");

  m.def("activation_backward", [](const Tensor& dy, const OptT& y, int act,
                                  std::optional<double> alpha, const OptT& x) {
    const char* op = "activation_backward";
    require_device();
    want_f32(op, "dy", dy);
    const Activation a = act_arg(op, act);
    const float al = alpha_arg(op, a, alpha);
    const bool needs_x = activation_backward_needs_input(a);
    if (needs_x && !x)
      fail(op, ": gelu's backward needs the forward input x (its derivative is not a function of y)");
    if (!needs_x && !y) fail(op, ": y (the forward output) is required");
    for (const OptT* t : {&y, &x}) {
      if (!*t) continue;
      want_f32(op, t == &y ? "y" : "x", **t);
      if ((*t)->shape != dy.shape)
        fail(op, ": dy and ", t == &y ? "y" : "x", " must have the same shape, got ",
             shape_str(dy.shape), " and ", shape_str((*t)->shape));
    }
    Tensor dx = empty_f32(dy.shape, op);
    py::gil_scoped_release nogil;
    activation_backward(a, dy.cf(), y ? y->cf() : nullptr, dx.f(), dy.numel(), al,
                        x ? x->cf() : nullptr);
    return dx;
  }, py::arg("dy"), py::arg("y"), py::arg("act"), py::arg("alpha") = py::none(),
     py::arg("x") = py::none(),
     "dx = dy * act'(x), written with the forward output y (gelu: with the forward input x; y "
     "may be None).");

  m.def("bias_activation_", [](Tensor& y, const OptT& b, int act, std::optional<double> alpha) {
    const char* op = "bias_activation_";
    require_device();
    want_f32(op, "y", y);
    const Activation a = act_arg(op, act);
    const float al = alpha_arg(op, a, alpha);
    if (y.ndim() < 2) fail(op, ": y must be at least 2-D (N, C, ...), got shape ", shape_str(y.shape));
    const int64_t N = y.dim(0), C = y.dim(1), inner = N * C ? y.numel() / (N * C) : 0;
    const float* bias = nullptr;
    if (b) {
      want_f32(op, "b", *b);
      if (b->ndim() != 1 || b->dim(0) != C)
        fail(op, ": b must have shape (", C, ",) for y of shape ", shape_str(y.shape), ", got ",
             shape_str(b->shape));
      bias = b->cf();
    }
    py::gil_scoped_release nogil;
    bias_activation_forward(y.f(), bias, N, C, inner, a, al);
  }, py::arg("y"), py::arg("b"), py::arg("act") = 0, py::arg("alpha") = py::none(),
     "y (N, C, ...) = act(y + b[c]) in place; b may be None.");

  m.def("softmax", [](const Tensor& x, int64_t axis) {
    const char* op = "softmax";
    require_device();
    want_f32(op, "x", x);
    if (x.ndim() < 1) fail(op, ": x must have at least one dimension");
    if (axis < -x.ndim() || axis >= x.ndim())
      fail(op, ": axis ", axis, " is out of range for x of shape ", shape_str(x.shape));
    if (axis < 0) axis += x.ndim();
    // x as (outer, len, inner) around the axis; inner == 1 is the row-wise (last axis) case.
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x.dim(int(i));
    for (int64_t i = axis + 1; i < x.ndim(); ++i) inner *= x.dim(int(i));
    const int64_t len = x.dim(int(axis));
    Tensor y = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    if (inner == 1)
      softmax_forward(x.cf(), y.f(), outer, len);
    else
      softmax_strided_forward(x.cf(), y.f(), outer, len, inner);
    return y;
  }, py::arg("x"), py::arg("axis") = -1, "Softmax along `axis` (max-subtracted).");

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

  m.def("linear_forward", [](const Tensor& x, const Tensor& w, const OptT& b, int act,
                             std::optional<double> alpha) {
    const char* op = "linear_forward";
    require_device();
    want_f32(op, "x", x); want_f32(op, "w", w);
    want_ndim(op, "x", x, 2, "(N, I)");
    want_ndim(op, "w", w, 2, "(O, I)");
    const Activation a = act_arg(op, act);
    const float al = alpha_arg(op, a, alpha);
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
    linear_forward(x.cf(), w.cf(), bias, y.f(), N, I, O, a, al);
    return y;
  }, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("act") = 0,
     py::arg("alpha") = py::none(),
     "y (N,O) = act(x (N,I) w^T + b), w (O,I).");

  m.def("linear_backward", [](const Tensor& dy, const Tensor& x, const Tensor& w,
                              const std::optional<Tensor>& dw_out,
                              const std::optional<Tensor>& db_out) {
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
    Tensor dx = empty_f32({N, I}, op);
    Tensor dw = out_tensor(dw_out, {O, I}, op, "dw_out"), db = out_tensor(db_out, {O}, op, "db_out");
    {
      py::gil_scoped_release nogil;
      linear_backward(dy.cf(), x.cf(), w.cf(), dx.f(), dw.f(), db.f(), N, I, O);
    }
    return py::make_tuple(dx, dw, db);
  }, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("dw_out") = py::none(),
     py::arg("db_out") = py::none(),
     "(dx (N,I) = dy w, dw (O,I) = dy^T x, db (O) = sum of dy over N); dw and db go into "
     "dw_out and db_out when given.");

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

  // ---------------------------------------------------------------- upsampling, batch norm
  m.def("upsample2d_forward", [](const Tensor& x, Pair scale_hw, int mode, bool align_corners) {
    const char* op = "upsample2d";
    require_device();
    want_f32(op, "x", x);
    want_ndim(op, "x", x, 4, "(N, C, H, W)");
    if (scale_hw[0] < 1 || scale_hw[1] < 1) fail(op, ": scale must be >= 1");
    if (mode != 0 && mode != 1) fail(op, ": mode must be 0 (nearest) or 1 (bilinear), got ", mode);
    const int64_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
    const int64_t Ho = H * scale_hw[0], Wo = W * scale_hw[1];
    Tensor y = empty_f32({x.dim(0), x.dim(1), Ho, Wo}, op);
    py::gil_scoped_release nogil;
    if (mode == 0) upsample2d_nearest_forward(x.cf(), y.f(), planes, H, W, scale_hw[0], scale_hw[1]);
    else upsample2d_bilinear_forward(x.cf(), y.f(), planes, H, W, Ho, Wo, align_corners);
    return y;
  }, py::arg("x"), py::arg("scale"), py::arg("mode"), py::arg("align_corners") = false,
     "y (N, C, H*sh, W*sw); mode 0 nearest, 1 bilinear.");

  m.def("upsample2d_backward", [](const Tensor& dy, const std::vector<int64_t>& x_shape, Pair scale_hw,
                                  int mode, bool align_corners) {
    const char* op = "upsample2d_backward";
    require_device();
    want_f32(op, "dy", dy);
    shape_arg(op, "x_shape", x_shape, 4);
    checked_numel(op, "x_shape", x_shape);
    if (scale_hw[0] < 1 || scale_hw[1] < 1) fail(op, ": scale must be >= 1");
    if (mode != 0 && mode != 1) fail(op, ": mode must be 0 (nearest) or 1 (bilinear), got ", mode);
    const int64_t planes = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
    const int64_t Ho = H * scale_hw[0], Wo = W * scale_hw[1];
    const std::vector<int64_t> want{x_shape[0], x_shape[1], Ho, Wo};
    if (dy.shape != want) fail(op, ": dy must have shape ", shape_str(want), ", got ", shape_str(dy.shape));
    Tensor dx = empty_f32(x_shape, op);
    py::gil_scoped_release nogil;
    if (mode == 0) upsample2d_nearest_backward(dy.cf(), dx.f(), planes, H, W, scale_hw[0], scale_hw[1]);
    else upsample2d_bilinear_backward(dy.cf(), dx.f(), planes, H, W, Ho, Wo, align_corners);
    return dx;
  }, py::arg("dy"), py::arg("x_shape"), py::arg("scale"), py::arg("mode"),
     py::arg("align_corners") = false, "dx of upsample2d_forward (a gather: no atomics).");

  // x (N, C, ...) as (N, C, inner); a per-channel tensor must be float32 (C,).
  auto bn_dims = [](const char* op, const Tensor& x) {
    want_f32(op, "x", x);
    if (x.ndim() < 2 || x.dim(0) < 1 || x.dim(1) < 1)
      fail(op, ": x must be (N, C, ...) with N, C >= 1, got shape ", shape_str(x.shape));
    return std::array<int64_t, 3>{x.dim(0), x.dim(1), x.numel() / (x.dim(0) * x.dim(1))};
  };
  auto per_channel = [](const char* op, const char* name, const OptT& t, int64_t C) -> float* {
    if (!t) return nullptr;
    want_f32(op, name, *t);
    if (t->ndim() != 1 || t->dim(0) != C)
      fail(op, ": ", name, " must have shape (", C, ",), got ", shape_str(t->shape));
    return t->f();
  };

  m.def("batch_norm_forward_training", [bn_dims, per_channel](
            const Tensor& x, const OptT& gamma, const OptT& beta, const OptT& running_mean,
            const OptT& running_var, double eps, double momentum, bool unbiased) {
    const char* op = "batch_norm";
    require_device();
    const auto d = bn_dims(op, x);
    const float* g = per_channel(op, "gamma", gamma, d[1]);
    const float* b = per_channel(op, "beta", beta, d[1]);
    float* rm = per_channel(op, "running_mean", running_mean, d[1]);
    float* rv = per_channel(op, "running_var", running_var, d[1]);
    if (!(eps > 0.0)) fail(op, ": eps must be > 0, got ", eps);
    if (!(momentum >= 0.0 && momentum <= 1.0)) fail(op, ": momentum must be in [0, 1], got ", momentum);
    Tensor y = empty_f32(x.shape, op), mean = empty_f32({d[1]}, op), inv_std = empty_f32({d[1]}, op);
    {
      py::gil_scoped_release nogil;
      batch_norm_forward_training(x.cf(), g, b, y.f(), mean.f(), inv_std.f(), rm, rv, d[0], d[1], d[2],
                                  float(eps), float(momentum), unbiased);
    }
    return py::make_tuple(y, mean, inv_std);
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
     py::arg("running_var"), py::arg("eps"), py::arg("momentum"), py::arg("unbiased_running_var"),
     "(y, mean, inv_std) from the batch statistics; running statistics updated in place.");

  m.def("batch_norm_forward_inference", [bn_dims, per_channel](
            const Tensor& x, const OptT& gamma, const OptT& beta, const Tensor& running_mean,
            const Tensor& running_var, double eps) {
    const char* op = "batch_norm";
    require_device();
    const auto d = bn_dims(op, x);
    const float* g = per_channel(op, "gamma", gamma, d[1]);
    const float* b = per_channel(op, "beta", beta, d[1]);
    const float* rm = per_channel(op, "running_mean", running_mean, d[1]);
    const float* rv = per_channel(op, "running_var", running_var, d[1]);
    if (!(eps > 0.0)) fail(op, ": eps must be > 0, got ", eps);
    Tensor y = empty_f32(x.shape, op);
    py::gil_scoped_release nogil;
    batch_norm_forward_inference(x.cf(), g, b, y.f(), rm, rv, d[0], d[1], d[2], float(eps));
    return y;
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
     py::arg("running_var"), py::arg("eps"));

  m.def("batch_norm_backward", [bn_dims, per_channel](
            const Tensor& dy, const Tensor& x, const OptT& gamma, const Tensor& mean,
            const Tensor& inv_std, bool batch_stats) {
    const char* op = "batch_norm_backward";
    require_device();
    const auto d = bn_dims(op, x);
    want_f32(op, "dy", dy);
    if (dy.shape != x.shape) fail(op, ": dy has shape ", shape_str(dy.shape), " but x has shape ", shape_str(x.shape));
    const float* g = per_channel(op, "gamma", gamma, d[1]);
    const float* mp = per_channel(op, "mean", mean, d[1]);
    const float* ip = per_channel(op, "inv_std", inv_std, d[1]);
    Tensor dx = empty_f32(x.shape, op), dgamma = empty_f32({d[1]}, op), dbeta = empty_f32({d[1]}, op);
    {
      py::gil_scoped_release nogil;
      batch_norm_backward(dy.cf(), x.cf(), g, mp, ip, dx.f(), dgamma.f(), dbeta.f(), d[0], d[1], d[2],
                          batch_stats);
    }
    return py::make_tuple(dx, dgamma, dbeta);
  }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("inv_std"),
     py::arg("batch_stats") = true, "(dx, dgamma, dbeta)");

  // ---------------------------------------------------------------- losses
  // logits/targets (N, ...) of one shape; weights (N) or None.
  auto loss_dims = [](const char* op, const Tensor& z, const Tensor& t, const OptT& weights) {
    want_f32(op, "logits", z); want_f32(op, "targets", t);
    if (z.ndim() < 1 || z.numel() < 1) fail(op, ": logits must be non-empty (N, ...), got ", shape_str(z.shape));
    if (t.shape != z.shape)
      fail(op, ": targets must have the shape of logits ", shape_str(z.shape), ", got ", shape_str(t.shape));
    if (weights) {
      want_f32(op, "weights", *weights);
      if (weights->ndim() != 1 || weights->dim(0) != z.dim(0))
        fail(op, ": weights must have shape (", z.dim(0), ",), got ", shape_str(weights->shape));
    }
    return std::array<int64_t, 2>{z.dim(0), z.numel() / z.dim(0)};
  };
  m.def("bce_with_logits", [loss_dims](const Tensor& logits, const Tensor& targets, const OptT& weights) {
    const char* op = "binary_cross_entropy_with_logits";
    require_device();
    const auto d = loss_dims(op, logits, targets, weights);
    Tensor dl = empty_f32(logits.shape, op);
    double loss;
    {
      py::gil_scoped_release nogil;
      loss = bce_with_logits(logits.cf(), targets.cf(), weights ? weights->cf() : nullptr, dl.f(), d[0], d[1]);
    }
    return py::make_tuple(loss, dl);
  }, py::arg("logits"), py::arg("targets"), py::arg("weights") = py::none(),
     "(mean loss, dlogits) of binary cross-entropy from logits (copies the loss back).");
  m.def("bce_with_logits_sums", [loss_dims](const Tensor& logits, const Tensor& targets, Tensor& dlogits,
                                            Tensor& sums, const OptT& weights) {
    const char* op = "bce_with_logits_sums";
    require_device();
    const auto d = loss_dims(op, logits, targets, weights);
    want_f32(op, "dlogits", dlogits);
    if (dlogits.shape != logits.shape) fail(op, ": dlogits must have the shape of logits");
    want_i64(op, "sums", sums);
    want_numel(op, "sums", sums, 2);
    py::gil_scoped_release nogil;
    bce_with_logits_sums(logits.cf(), targets.cf(), weights ? weights->cf() : nullptr, dlogits.f(),
                         static_cast<double*>(sums.data), d[0], d[1]);
  }, py::arg("logits"), py::arg("targets"), py::arg("dlogits"), py::arg("sums"),
     py::arg("weights") = py::none(),
     "dlogits as bce_with_logits; adds the summed per-sample losses and the number of elements "
     "with (z > 0) == (t > 0.5) to sums (an int64 tensor of 2 holding float64), no host sync.");
  m.def("mse", [loss_dims](const Tensor& y, const Tensor& targets) {
    const char* op = "mse_loss";
    require_device();
    const auto d = loss_dims(op, y, targets, std::nullopt);
    Tensor dy = empty_f32(y.shape, op);
    double loss;
    {
      py::gil_scoped_release nogil;
      loss = mse(y.cf(), targets.cf(), dy.f(), d[0], d[1]);
    }
    return py::make_tuple(loss, dy);
  }, py::arg("y"), py::arg("targets"), "(mean (y - t)^2, dy = 2 (y - t) / size).");
  m.def("mse_sums", [loss_dims](const Tensor& y, const Tensor& targets, Tensor& dy, Tensor& sums) {
    const char* op = "mse_sums";
    require_device();
    const auto d = loss_dims(op, y, targets, std::nullopt);
    want_f32(op, "dy", dy);
    if (dy.shape != y.shape) fail(op, ": dy must have the shape of y");
    want_i64(op, "sums", sums);
    want_numel(op, "sums", sums, 1);
    py::gil_scoped_release nogil;
    mse_sums(y.cf(), targets.cf(), dy.f(), static_cast<double*>(sums.data), d[0], d[1]);
  }, py::arg("y"), py::arg("targets"), py::arg("dy"), py::arg("sums"),
     "dy as mse; adds the summed per-sample losses to sums (an int64 tensor of 1 holding a "
     "float64), no host sync.");

  // ---------------------------------------------------------------- generic tensor ops
  auto same = [](const char* op, const char* a, const Tensor& ta, const char* b, const Tensor& tb) {
    want_f32(op, a, ta); want_f32(op, b, tb);
    if (ta.shape != tb.shape)
      fail(op, ": ", a, " and ", b, " must have the same shape, got ", shape_str(ta.shape), " and ",
           shape_str(tb.shape));
  };
  m.def("add", [same](const Tensor& a, const Tensor& b) {
    require_device();
    same("add", "a", a, "b", b);
    Tensor out = empty_f32(a.shape, "add");
    py::gil_scoped_release nogil;
    add(a.cf(), b.cf(), out.f(), a.numel());
    return out;
  }, py::arg("a"), py::arg("b"), "a + b (same shapes).");
  m.def("add_", [same](Tensor& out, const Tensor& a) {
    require_device();
    same("add_", "out", out, "a", a);
    py::gil_scoped_release nogil;
    add_inplace(out.f(), a.cf(), a.numel());
  }, py::arg("out"), py::arg("a"), "out += a, in place.");
  m.def("scale", [](const Tensor& a, double s) {
    require_device();
    want_f32("scale", "a", a);
    Tensor out = empty_f32(a.shape, "scale");
    py::gil_scoped_release nogil;
    scale(a.cf(), float(s), out.f(), a.numel());
    return out;
  }, py::arg("a"), py::arg("s"), "s * a.");
  m.def("concat_channels", [](const std::vector<Tensor>& ts) {
    const char* op = "concat_channels";
    require_device();
    if (ts.empty()) fail(op, ": tensors must be a non-empty list");
    const Tensor& first = ts[0];
    if (first.ndim() < 2) fail(op, ": tensors must be at least 2-D (N, C, ...)");
    int64_t C = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      want_f32(op, "tensors", ts[i]);
      const bool ok = ts[i].ndim() == first.ndim() && ts[i].dim(0) == first.dim(0) &&
          std::equal(ts[i].shape.begin() + 2, ts[i].shape.end(), first.shape.begin() + 2);
      if (!ok) fail(op, ": tensors[", i, "] has shape ", shape_str(ts[i].shape), ", which does not match ",
                    shape_str(first.shape), " outside axis 1");
      C += ts[i].dim(1);
    }
    std::vector<int64_t> shape = first.shape;
    shape[1] = C;
    Tensor out = empty_f32(shape, op);
    const int64_t N = first.dim(0), inner = first.numel() / (N * first.dim(1) ? N * first.dim(1) : 1);
    py::gil_scoped_release nogil;
    int64_t c0 = 0;
    for (const Tensor& t : ts) {
      copy_channels(t.cf(), t.dim(1), 0, out.f(), C, c0, t.dim(1), N, inner);
      c0 += t.dim(1);
    }
    return out;
  }, py::arg("tensors"), "Concatenation along axis 1 (channels or features).");
  m.def("slice_channels", [](const Tensor& x, int64_t c0, int64_t c1) {
    const char* op = "slice_channels";
    require_device();
    want_f32(op, "x", x);
    if (x.ndim() < 2) fail(op, ": x must be at least 2-D (N, C, ...)");
    if (c0 < 0 || c1 < c0 || c1 > x.dim(1)) fail(op, ": need 0 <= c0 <= c1 <= ", x.dim(1), ", got ", c0, ", ", c1);
    std::vector<int64_t> shape = x.shape;
    shape[1] = c1 - c0;
    Tensor out = empty_f32(shape, op);
    const int64_t N = x.dim(0), inner = N * x.dim(1) ? x.numel() / (N * x.dim(1)) : 0;
    py::gil_scoped_release nogil;
    copy_channels(x.cf(), x.dim(1), c0, out.f(), c1 - c0, 0, c1 - c0, N, inner);
    return out;
  }, py::arg("x"), py::arg("c0"), py::arg("c1"), "Channels [c0, c1) as a contiguous copy.");
  m.def("zero_pad2d", [](const Tensor& x, int64_t t, int64_t b, int64_t l, int64_t r) {
    const char* op = "zero_pad2d";
    require_device();
    want_f32(op, "x", x);
    want_ndim(op, "x", x, 4, "(N, C, H, W)");
    if (t < 0 || b < 0 || l < 0 || r < 0) fail(op, ": padding must be >= 0");
    Tensor y = empty_f32({x.dim(0), x.dim(1), x.dim(2) + t + b, x.dim(3) + l + r}, op);
    py::gil_scoped_release nogil;
    zero_pad2d(x.cf(), y.f(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), t, b, l, r);
    return y;
  }, py::arg("x"), py::arg("top"), py::arg("bottom"), py::arg("left"), py::arg("right"));
  m.def("crop2d", [](const Tensor& x, int64_t t, int64_t b, int64_t l, int64_t r) {
    const char* op = "crop2d";
    require_device();
    want_f32(op, "x", x);
    want_ndim(op, "x", x, 4, "(N, C, H, W)");
    if (t < 0 || b < 0 || l < 0 || r < 0 || t + b > x.dim(2) || l + r > x.dim(3))
      fail(op, ": cropping (", t, ", ", b, ", ", l, ", ", r, ") does not fit x ", shape_str(x.shape));
    const int64_t H = x.dim(2) - t - b, W = x.dim(3) - l - r;
    Tensor y = empty_f32({x.dim(0), x.dim(1), H, W}, op);
    py::gil_scoped_release nogil;
    crop2d(x.cf(), y.f(), x.dim(0) * x.dim(1), H, W, t, b, l, r);
    return y;
  }, py::arg("x"), py::arg("top"), py::arg("bottom"), py::arg("left"), py::arg("right"));
  m.def("nchw_to_nhwc", [](const Tensor& x) {
    const char* op = "nchw_to_nhwc";
    require_device();
    want_f32(op, "x", x);
    want_ndim(op, "x", x, 4, "(N, C, H, W)");
    Tensor y = empty_f32({x.dim(0), x.dim(2), x.dim(3), x.dim(1)}, op);
    py::gil_scoped_release nogil;
    batched_transpose(x.cf(), y.f(), x.dim(0), x.dim(1), x.dim(2) * x.dim(3));
    return y;
  }, py::arg("x"), "y (N, H, W, C) from x (N, C, H, W).");
  m.def("nhwc_to_nchw", [](const Tensor& x) {
    const char* op = "nhwc_to_nchw";
    require_device();
    want_f32(op, "x", x);
    want_ndim(op, "x", x, 4, "(N, H, W, C)");
    Tensor y = empty_f32({x.dim(0), x.dim(3), x.dim(1), x.dim(2)}, op);
    py::gil_scoped_release nogil;
    batched_transpose(x.cf(), y.f(), x.dim(0), x.dim(1) * x.dim(2), x.dim(3));
    return y;
  }, py::arg("x"), "y (N, C, H, W) from x (N, H, W, C).");
  m.def("softmax_backward", [same](const Tensor& dy, const Tensor& y) {
    const char* op = "softmax_backward";
    require_device();
    same(op, "dy", dy, "y", y);
    if (y.ndim() < 1) fail(op, ": y must have at least one dimension");
    const int64_t cols = y.dim(y.ndim() - 1), rows = cols ? y.numel() / cols : 0;
    Tensor dx = empty_f32(y.shape, op);
    py::gil_scoped_release nogil;
    softmax_backward(dy.cf(), y.cf(), dx.f(), rows, cols);
    return dx;
  }, py::arg("dy"), py::arg("y"), "dx = y (dy - sum(dy y)) along the last axis.");
  m.def("rmsprop_update", [](Tensor& p, const Tensor& g, Tensor& ms, double lr, double rho, double eps) {
    const char* op = "rmsprop_update";
    require_device();
    want_f32(op, "p", p); want_f32(op, "g", g); want_f32(op, "ms", ms);
    want_numel(op, "g", g, p.numel());
    want_numel(op, "ms", ms, p.numel());
    py::gil_scoped_release nogil;
    rmsprop_update(p.f(), g.cf(), ms.f(), p.numel(), float(lr), float(rho), float(eps));
  }, py::arg("p"), py::arg("g"), py::arg("ms"), py::arg("lr"), py::arg("rho"), py::arg("eps"),
     "RMSprop in place: ms = rho ms + (1 - rho) g^2; p -= lr g / (sqrt(ms) + eps).");

  // ---------------------------------------------------------------- training on the device
  // The pieces of a training step that keep it on the GPU (csrc/cuda/training.cu). `counters`
  // is an int64 tensor of 2: [batch cursor, optimiser step]; `sums` an int64 tensor of 3 whose
  // bytes are float64 [loss sum, correct count, bad labels] (read with .numpy().view(float64)).
  m.def("gather_batch", [](const Tensor& x_all, const Tensor& y_all, const Tensor& perm,
                           const Tensor& counters, int64_t batch_stride, Tensor& xb, Tensor& yb) {
    const char* op = "gather_batch";
    require_device();
    want_f32(op, "x_all", x_all); want_i64(op, "y_all", y_all); want_i64(op, "perm", perm);
    want_i64(op, "counters", counters); want_f32(op, "xb", xb); want_i64(op, "yb", yb);
    want_numel(op, "counters", counters, 2);
    if (x_all.ndim() < 1 || xb.ndim() != x_all.ndim() || y_all.ndim() != 1 || yb.ndim() != 1)
      fail(op, ": want x_all (S, ...), y_all (S), xb (m, ...), yb (m)");
    const int64_t S = x_all.dim(0), m = xb.dim(0);
    if (y_all.dim(0) != S || perm.numel() != S || yb.dim(0) != m)
      fail(op, ": x_all, y_all and perm must have the same number of samples, xb and yb the same "
           "batch size");
    for (int i = 1; i < x_all.ndim(); ++i)
      if (xb.dim(i) != x_all.dim(i))
        fail(op, ": xb.shape ", shape_str(xb.shape), " does not match x_all.shape ",
             shape_str(x_all.shape));
    if (batch_stride < m) fail(op, ": batch_stride must be >= the batch size ", m);
    const int64_t sample = S ? x_all.numel() / S : 0;
    py::gil_scoped_release nogil;
    gather_batch(x_all.cf(), static_cast<const int64_t*>(y_all.data),
                 static_cast<const int64_t*>(perm.data), static_cast<const int64_t*>(counters.data),
                 batch_stride, xb.f(), static_cast<int64_t*>(yb.data), m, sample, S);
  }, py::arg("x_all"), py::arg("y_all"), py::arg("perm"), py::arg("counters"),
     py::arg("batch_stride"), py::arg("xb"), py::arg("yb"),
     "xb[i] = x_all[perm[counters[0] * batch_stride + i]] (and yb from y_all), on the GPU. A "
     "position past perm's end or an index outside the data gives a zero sample with label -1.");

  m.def("softmax_xent_sums", [](const Tensor& logits, const Tensor& labels, Tensor& dlogits,
                                Tensor& sums) {
    const char* op = "softmax_xent_sums";
    require_device();
    want_f32(op, "logits", logits); want_i64(op, "labels", labels);
    want_f32(op, "dlogits", dlogits); want_i64(op, "sums", sums);
    want_ndim(op, "logits", logits, 2, "(N, C)");
    want_numel(op, "sums", sums, 3);
    if (labels.numel() != logits.dim(0) || dlogits.shape != logits.shape)
      fail(op, ": want labels (N) and dlogits (N, C) for logits ", shape_str(logits.shape));
    py::gil_scoped_release nogil;
    softmax_xent_sums(logits.cf(), static_cast<const int64_t*>(labels.data), dlogits.f(),
                      static_cast<double*>(sums.data), logits.dim(0), logits.dim(1));
  }, py::arg("logits"), py::arg("labels"), py::arg("dlogits"), py::arg("sums"),
     "dlogits = (softmax(logits) - onehot(labels)) / N; adds the summed loss, the number of "
     "correct rows and the number of out-of-range labels to sums (float64 x 3), no host sync.");

  m.def("dropout_forward", [](const Tensor& x, Tensor& y, Tensor& mask, double rate,
                              uint64_t seed, const Tensor& counters) {
    const char* op = "dropout_forward";
    require_device();
    want_f32(op, "x", x); want_f32(op, "y", y); want_f32(op, "mask", mask);
    want_i64(op, "counters", counters);
    want_numel(op, "counters", counters, 2);
    if (y.numel() != x.numel() || mask.numel() != x.numel())
      fail(op, ": x, y and mask must have the same size");
    if (!(rate >= 0.0 && rate < 1.0)) fail(op, ": rate must be in [0, 1), got ", rate);
    py::gil_scoped_release nogil;
    dropout_forward(x.cf(), y.f(), mask.f(), x.numel(), float(rate), seed,
                    static_cast<const int64_t*>(counters.data));
  }, py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("rate"), py::arg("seed"),
     py::arg("counters"),
     "Inverted dropout: mask = (u >= rate) / (1 - rate) with u from a counter-based generator "
     "of (seed, counters[1], index); y = x * mask.");

  m.def("multiply", [](const Tensor& a, const Tensor& b, Tensor& out) {
    const char* op = "multiply";
    require_device();
    want_f32(op, "a", a); want_f32(op, "b", b); want_f32(op, "out", out);
    if (b.numel() != a.numel() || out.numel() != a.numel())
      fail(op, ": a, b and out must have the same size");
    py::gil_scoped_release nogil;
    multiply(a.cf(), b.cf(), out.f(), a.numel());
  }, py::arg("a"), py::arg("b"), py::arg("out"), "out = a * b, elementwise.");

  m.def("sgd_update", [](Tensor& p, const Tensor& g, const std::optional<Tensor>& velocity,
                         double lr, double momentum, double weight_decay, bool nesterov) {
    const char* op = "sgd_update";
    require_device();
    want_f32(op, "p", p); want_f32(op, "g", g);
    want_numel(op, "g", g, p.numel());
    if (velocity) { want_f32(op, "velocity", *velocity); want_numel(op, "velocity", *velocity, p.numel()); }
    if (momentum != 0.0 && !velocity) fail(op, ": momentum needs a velocity tensor");
    py::gil_scoped_release nogil;
    sgd_update(p.f(), g.cf(), velocity ? velocity->f() : nullptr, p.numel(), float(lr),
               float(momentum), float(weight_decay), nesterov);
  }, py::arg("p"), py::arg("g"), py::arg("velocity"), py::arg("lr"), py::arg("momentum"),
     py::arg("weight_decay"), py::arg("nesterov"),
     "SGD on flat buffers, the arithmetic of fastconv.optimizers.SGD.");

  m.def("adam_update", [](Tensor& p, const Tensor& g, Tensor& m1, Tensor& v1, double lr,
                          double beta_1, double beta_2, double epsilon, double weight_decay,
                          const Tensor& counters) {
    const char* op = "adam_update";
    require_device();
    want_f32(op, "p", p); want_f32(op, "g", g); want_f32(op, "m", m1); want_f32(op, "v", v1);
    want_i64(op, "counters", counters);
    want_numel(op, "counters", counters, 2);
    want_numel(op, "g", g, p.numel()); want_numel(op, "m", m1, p.numel());
    want_numel(op, "v", v1, p.numel());
    py::gil_scoped_release nogil;
    adam_update(p.f(), g.cf(), m1.f(), v1.f(), p.numel(), lr, beta_1, beta_2, float(epsilon),
                weight_decay, static_cast<const int64_t*>(counters.data));
  }, py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("lr"), py::arg("beta_1"),
     py::arg("beta_2"), py::arg("epsilon"), py::arg("weight_decay"), py::arg("counters"),
     "Adam on flat buffers (Keras's form, step t = counters[1] + 1), the arithmetic of "
     "fastconv.optimizers.Adam.");

  m.def("step_end", [](Tensor& counters) {
    const char* op = "step_end";
    require_device();
    want_i64(op, "counters", counters);
    want_numel(op, "counters", counters, 2);
    py::gil_scoped_release nogil;
    step_end(static_cast<int64_t*>(counters.data));
  }, py::arg("counters"), "counters += 1 on the GPU (the last kernel of a training step).");

  // ---------------------------------------------------------------- CUDA graphs
  py::class_<Graph>(m, "Graph",
                    "A recorded sequence of ops (capture_begin ... capture_end), replayed with "
                    "one launch.")
      .def("replay", [](Graph& g) {
          py::gil_scoped_release nogil;
          g.replay();
        }, "Queue the whole recorded sequence on the GPU again.")
      .def_property_readonly("num_nodes", &Graph::num_nodes, "Number of recorded operations.");
  m.def("capture_begin", [] { capture_begin(); },
        "Start recording every following op into a CUDA graph instead of running it.");
  m.def("capture_end", [] { return std::unique_ptr<Graph>(capture_end()); },
        "Stop recording and return the Graph (RuntimeError if the capture failed).");
  m.def("capture_abort", [] { capture_abort(); }, "Stop recording and discard the record.");
  m.def("capturing", [] { return capturing(); }, "Whether a capture is running.");
}
