// The host side of fastconv's CUDA backend: device queries that never throw, copies, and the
// caching device allocator every tensor and workspace comes from.
//
// Allocator: free lists keyed by rounded size (512 B granules below 1 MiB, 2 MiB granules
// above), a table of live blocks, one mutex. A free puts the block on its list; an alloc of the
// same rounded size takes it back without cudaMalloc. Blocks never move between sizes and are
// only given back to the driver by empty_cache() (or when cudaMalloc runs out of memory).
// All kernels and copies run on the legacy default stream, so a block freed after queuing a
// kernel that uses it can be reused by the next op: that op's kernels run after the first's.
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {

// ---------------------------------------------------------------- devices
namespace {
struct DeviceQuery {
  int count = 0;
  std::string error;  // "" when at least one device is usable
};

const DeviceQuery& query_devices() noexcept {
  static const DeviceQuery q = [] {
    DeviceQuery r;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      const char* name = cudaGetErrorName(err);
      const char* text = cudaGetErrorString(err);
      r.error = std::string(text ? text : "unknown CUDA error") + " (" + (name ? name : "?") + ")";
      r.count = 0;
      cudaGetLastError();  // clear the error so it does not surface in a later check
    } else if (n <= 0) {
      r.error = "the CUDA runtime found no device";
      r.count = 0;
    } else {
      r.count = n;
    }
    return r;
  }();
  return q;
}
}  // namespace

bool device_available() noexcept { return query_devices().count > 0; }
std::string why_unavailable() noexcept { return query_devices().error; }
int device_count() noexcept { return query_devices().count; }

std::string device_name(int dev) noexcept {
  if (dev < 0 || dev >= device_count()) return "";
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
}

void require_device() {
  if (!device_available())
    throw std::runtime_error("fastconv.cuda: no CUDA GPU is available: " + why_unavailable());
}

int sm_count() {
  static std::atomic<int> cached{0};
  int v = cached.load();
  if (v > 0) return v;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
  if (v < 1) v = 1;
  cached.store(v);
  return v;
}

// ---------------------------------------------------------------- sync and copies
void synchronize() {
  require_device();
  CUDA_CHECK(cudaDeviceSynchronize());
}

void synchronize_stream(uintptr_t handle) {
  CUDA_CHECK(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(handle)));
}

int current_device() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}
void fill_zero(void* dst, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, 0));
}

bool is_device_pointer(const void* ptr) noexcept {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

// ---------------------------------------------------------------- caching allocator
namespace {
class CachingAllocator {
 public:
  static size_t round_size(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSmallLimit = size_t(1) << 20;
    if (bytes == 0) bytes = 1;
    if (bytes < kSmallLimit) return (bytes + kSmall - 1) / kSmall * kSmall;
    return (bytes + kLarge - 1) / kLarge * kLarge;
  }

  void* alloc(size_t bytes) {
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      allocated_ += size;
      live_[p] = size;
      ++hits_;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // out of memory is not sticky: clear it, free the cache, retry
      release_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
    }
    ++mallocs_;
    allocated_ += size;
    live_[p] = size;
    return p;
  }

  void free(void* p) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: never happens, never crash on it
    const size_t size = it->second;
    live_.erase(it);
    allocated_ -= size;
    try {
      free_[size].push_back(p);
      cached_ += size;
    } catch (...) {
      cudaFree(p);  // no memory to remember it: give it back to the driver
      cudaGetLastError();
    }
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return AllocatorStats{allocated_, cached_, mallocs_, hits_};
  }

 private:
  void release_cached_locked() {
    // cudaFree synchronises the device, so no queued kernel still uses these blocks.
    for (auto& kv : free_)
      for (void* p : kv.second) cudaFree(p);
    cudaGetLastError();
    free_.clear();
    cached_ = 0;
  }

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // rounded size -> free blocks
  std::unordered_map<void*, size_t> live_;               // block -> rounded size
  size_t allocated_ = 0, cached_ = 0, mallocs_ = 0, hits_ = 0;
};

// Never destroyed: tensors may be freed during interpreter shutdown, after static destructors.
CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}
}  // namespace

void* device_alloc(size_t bytes) {
  require_device();
  return allocator().alloc(bytes);
}
void device_free(void* ptr) noexcept { allocator().free(ptr); }
void empty_cache() {
  if (device_available()) allocator().empty();
}
AllocatorStats allocator_stats() { return allocator().stats(); }

// ---------------------------------------------------------------- numerics
namespace {
std::atomic<bool> g_allow_tf32{false};
}
void set_allow_tf32(bool allow) noexcept { g_allow_tf32.store(allow); }
bool allow_tf32() noexcept { return g_allow_tf32.load(); }

}  // namespace cuda
}  // namespace fastconv
