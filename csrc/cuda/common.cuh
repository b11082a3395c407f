// Shared by every fastconv .cu file: the error check, launch helpers, small device functions.
//
// CUDA_CHECK(call) turns a failing CUDA runtime call into a std::runtime_error naming the file,
// the line and cudaGetErrorString; CUDA_CHECK_LAUNCH() does the same for the kernel launched
// just before it (cudaGetLastError), as llm.c's cudaCheck does. The host-side runtime (device
// queries, the caching allocator) is declared in runtime.h so plain C++ can use it too.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/runtime.h"
#include "ops.h"

namespace fastconv {
namespace cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("fastconv.cuda: CUDA error at ") + file + ":" +
                           std::to_string(line) + " (" + what + "): " + cudaGetErrorString(err));
}

#define CUDA_CHECK(call)                                                           \
  do {                                                                             \
    cudaError_t fastconv_err_ = (call);                                            \
    if (fastconv_err_ != cudaSuccess)                                              \
      ::fastconv::cuda::throw_cuda_error(fastconv_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Blocks needed to cover n items with `threads` per block, capped to what a 1-D grid
// addresses; kernels using it loop with a grid stride, so the cap never loses items.
inline unsigned int grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  const int64_t cap = int64_t(1) << 20;  // ~1M blocks is plenty for any GPU with a grid stride
  return static_cast<unsigned int>(blocks < cap ? blocks : cap);
}

// The stream every fastconv kernel, memset and device copy is queued on: the legacy default
// stream (0), except while a CUDA graph is being captured (runtime.h: capture_begin), when it
// is the capturing stream. Launch as kernel<<<grid, block, smem, stream()>>>.
cudaStream_t stream();
// Throws std::runtime_error naming `what` while a graph is being captured: host copies and
// synchronisation would run once, now, instead of being recorded.
void refuse_while_capturing(const char* what);

// Number of streaming multiprocessors of the current device (cached after the first call).
int sm_count();

// A device buffer from the caching allocator, returned to it when it goes out of scope.
// Used for workspaces inside an op (split-K partial sums, per-row losses).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : ptr_(bytes ? device_alloc(bytes) : nullptr) {}
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_;
};

// Loaders, epilogues and tile helpers are __host__ __device__ so that the host emulation of
// the GEMM engine (tests/cuda_host_emulation.cu) runs the very same index code on the CPU.
#define FC_HD __host__ __device__ __forceinline__

// Read-only load: through the texture path on the GPU, a plain load on the host.
template <class T>
FC_HD T ldg(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

// Division by a fixed positive divisor with a multiply-high and a shift instead of an integer
// divide (Granlund & Montgomery 1994; CUTLASS's FastDivmod): exact for 0 <= n < 2^31. The
// im2col decodes divide by R*S, S, Q, P*Q, W, H*W and the strides for every element they
// load; a hardware-less 32-bit divide costs ~20 instructions, this costs 3.
struct FastDiv {
  uint32_t d = 1, mul = 1, shr = 0;
  FastDiv() = default;
  explicit FastDiv(int64_t divisor) : d(uint32_t(divisor)) {
    if (divisor < 1 || divisor > 0x7fffffff)
      throw std::invalid_argument("FastDiv: divisor out of range: " + std::to_string(divisor));
    while ((uint64_t(1) << shr) < d) ++shr;  // shr = ceil(log2(d))
    mul = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shr) - d)) / d + 1);
  }
  FC_HD int div(int n) const {
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(uint32_t(n), mul);
#else
    const uint32_t hi = uint32_t((uint64_t(uint32_t(n)) * mul) >> 32);
#endif
    return int((hi + uint32_t(n)) >> shr);
  }
};

// Reductions across the 32 lanes of a warp (every lane gets the result), for the row-wise
// kernels (softmax.cu, training.cu).
__device__ __forceinline__ float warp_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The normal CDF through erfc on both sides (no 1 + erf cancellation in the negative tail).
FC_HD float normal_cdf(float v) { return 0.5f * erfcf(-v * 0.707106781186547524f); }
// GELU's tanh form as x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) (= 0.5 x (1 + tanh u)).
FC_HD float gelu_tanh_arg(float v) { return 1.59576912160573071f * (v + 0.044715f * v * v * v); }
FC_HD float sigmoid_of(float v) {               // never overflows: e = e^-|v|
  const float e = expf(-fabsf(v));
  const float s = 1.f / (1.f + e);
  return v < 0.f ? e * s : s;
}

// The activation fused into an output pass; codes as in ops.h (0 none, 1 relu, 2 tanh,
// 3 sigmoid, 4 leaky relu, 5 elu, 6 gelu, 7 gelu tanh), alpha the parameter of 4 and 5.
// NaN propagates through 4 to 7 (the compares are false for NaN, and the other side keeps it).
FC_HD float apply_activation(int act, float v, float alpha = 0.f) {
  switch (act) {
    case 1: return v < 0.f ? 0.f : v;   // NaN stays NaN (fmaxf(v, 0) would return 0)
    case 2: return tanhf(v);
    case 3: return 1.f / (1.f + expf(-v));
    case 4: return v > 0.f ? v : alpha * v;
    case 5: return v > 0.f ? v : alpha * expm1f(v);
    case 6: return v * normal_cdf(v);
    case 7: return v * sigmoid_of(gelu_tanh_arg(v));
    default: return v;
  }
}

// dx for one element: from the forward output y (codes 1-5) or the forward input x (6, 7).
// relu passes g where y > 0 or y is NaN and gives 0 where y <= 0, as PyTorch's threshold_backward.
FC_HD float activation_grad(int act, float g, float y, float x, float alpha) {
  switch (act) {
    case 1: return y <= 0.f ? 0.f : g;
    case 2: return g * (1.f - y * y);
    case 3: return g * y * (1.f - y);
    case 4: return y != y ? y : (y > 0.f ? g : g * alpha);
    case 5: return y > 0.f ? g : g * (y + alpha);
    case 6: {
      const float xc = fminf(fmaxf(x, -30.f), 30.f);  // x times a density that is 0 out there
      const float d = normal_cdf(x) + xc * expf(-0.5f * x * x) * 0.398942280401432678f;
      return x != x ? x : g * d;
    }
    case 7: {
      const float s = sigmoid_of(gelu_tanh_arg(x));
      const float xc = fminf(fmaxf(x, -30.f), 30.f);
      const float du = 1.59576912160573071f * (1.f + 0.134145f * xc * xc);
      return x != x ? x : g * (s + xc * s * (1.f - s) * du);
    }
    default: return g;
  }
}

}  // namespace cuda
}  // namespace fastconv
