// fastconv's CUDA runtime layer, as plain C++: device queries, the caching allocator, copies.
//
// bind_cuda.cpp is compiled by the host C++ compiler and must not include a CUDA header, so
// everything it needs from the CUDA runtime is declared here and implemented in runtime.cu.
// All work goes to the CUDA legacy default stream (stream 0), so ops, copies and frees are
// ordered among themselves without events. The one exception is CUDA graph capture (below):
// between capture_begin and capture_end every op is recorded on a private stream instead, and
// the graph it makes is later replayed on stream 0, in order with everything else.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fastconv {
namespace cuda {

// --- devices (never throw) -----------------------------------------------------------------
// True when the CUDA runtime finds at least one device. Any runtime error (no driver, no
// device, a driver too old for the runtime) counts as "no GPU".
bool device_available() noexcept;
// The runtime's error string when no device is usable, "" when one is.
std::string why_unavailable() noexcept;
// Number of CUDA devices, 0 on any error.
int device_count() noexcept;
// Name of device `dev` ("" on any error).
std::string device_name(int dev = 0) noexcept;

// Throws std::runtime_error("fastconv.cuda: no CUDA GPU is available: <reason>") unless a
// device is usable. Every op and every Tensor constructor calls it first.
void require_device();

// --- synchronisation and copies (throw std::runtime_error on a CUDA error) ----------------
void synchronize();                       // cudaDeviceSynchronize
void synchronize_stream(uintptr_t handle); // cudaStreamSynchronize on a foreign stream handle
int current_device();
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void fill_zero(void* dst, size_t bytes);  // cudaMemsetAsync(0) on the default stream
// True when ptr is memory the GPU can read (device or managed memory).
bool is_device_pointer(const void* ptr) noexcept;

// --- the caching allocator --------------------------------------------------------------------
// device_alloc returns a block of at least `bytes` (rounded up to 512 bytes below 1 MiB and to
// 2 MiB above), reusing a cached free block of the same rounded size when there is one; only a
// miss calls cudaMalloc (and on out-of-memory, empties the cache and tries once more).
// device_free returns the block to the cache; it never calls cudaFree. Freed blocks may be
// handed out again while kernels that used them are still queued: that is safe because every
// kernel runs on the one default stream, in order. Thread-safe (one mutex).
void* device_alloc(size_t bytes);
void device_free(void* ptr) noexcept;
// Release every cached free block to the driver (cudaFree). Blocks in use are untouched.
void empty_cache();
struct AllocatorStats {
  size_t allocated_bytes;  // bytes in blocks handed out and not yet freed
  size_t cached_bytes;     // bytes in free blocks kept for reuse
  size_t cuda_mallocs;     // cudaMalloc calls so far
  size_t cache_hits;       // device_alloc calls served from the cache
};
AllocatorStats allocator_stats();

// --- CUDA graphs ------------------------------------------------------------------------------
// A training step is dozens of small kernels; launching them one by one from Python costs more
// than running them. capture_begin() starts recording: every op that follows (on this thread)
// is recorded, not run, until capture_end() turns the record into a Graph whose replay() runs
// the whole sequence with one launch. Ops recorded must not copy to or from the host or
// synchronise (those fail the capture, and capture_end throws).
//
// Memory: blocks allocated (or freed) while capturing belong to the graph's private pool, so a
// replay can write them again without clobbering tensors allocated later; they go back to the
// shared cache when the Graph is destroyed.
class Graph {
 public:
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void replay();           // cudaGraphLaunch on stream 0
  size_t num_nodes() const { return nodes_; }

 private:
  friend Graph* capture_end();
  Graph() = default;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  int pool_ = 0;           // the allocator pool that owns the blocks the graph uses
  size_t nodes_ = 0;
};
void capture_begin();      // throws if a capture is already running
Graph* capture_end();      // the new graph (caller owns it); throws if the capture failed
void capture_abort() noexcept;  // end a capture without a graph (after an exception)
bool capturing() noexcept;

// --- numerics -----------------------------------------------------------------------------
// Allow TF32 tensor cores in conv2d and GEMM (default false: exact FP32). See conv2d.cu.
void set_allow_tf32(bool allow) noexcept;
bool allow_tf32() noexcept;

}  // namespace cuda
}  // namespace fastconv
