// The host side of fastconv's CUDA backend: device queries that never throw, copies, and the
// caching device allocator every tensor and workspace comes from.
//
// Allocator: free lists keyed by rounded size (512 B granules below 1 MiB, 2 MiB granules
// above), a table of live blocks, one mutex. A free puts the block on its list; an alloc of the
// same rounded size takes it back without cudaMalloc. Blocks never move between sizes and are
// only given back to the driver by empty_cache() (or when cudaMalloc runs out of memory).
// All kernels and copies run on the legacy default stream, so a block freed after queuing a
// kernel that uses it can be reused by the next op: that op's kernels run after the first's.
//
// Graph pools: while a CUDA graph is captured, blocks are taken from and freed into a pool
// private to that graph (a block freed during capture may be read by a recorded kernel, and a
// block allocated during capture is written by every replay). Pool blocks are never handed to
// ops outside the graph until the Graph is destroyed.
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
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

// ---------------------------------------------------------------- the stream
namespace {
cudaStream_t g_stream = 0;          // 0 (legacy default) unless a capture is running
cudaStream_t g_capture_stream = 0;  // created on the first capture, reused
bool g_capturing = false;
}  // namespace

cudaStream_t stream() { return g_stream; }
bool capturing() noexcept { return g_capturing; }

// Host copies and synchronisation cannot be recorded in a graph (they would run once, now).
void refuse_while_capturing(const char* what) {
  if (g_capturing)
    throw std::runtime_error(std::string("fastconv.cuda: ") + what +
                             " is not allowed while a CUDA graph is being captured");
}


// ---------------------------------------------------------------- sync and copies
void synchronize() {
  require_device();
  refuse_while_capturing("synchronize()");
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
  refuse_while_capturing("a host-to-device copy");
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  refuse_while_capturing("a device-to-host copy");
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}
void fill_zero(void* dst, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
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
    if (capture_pool_) {
      // Capturing: the graph's own free blocks first, then the shared cache (the block
      // becomes the graph's), then the driver.
      Pool& pool = pools_[capture_pool_];
      void* p = take(pool.free, size);
      if (!p) p = take(free_, size);
      if (p) {
        cached_ -= size;
        ++hits_;
      } else {
        p = malloc_locked(size);
      }
      allocated_ += size;
      live_[p] = size;
      pool.blocks.insert(p);
      owner_[p] = capture_pool_;
      return p;
    }
    if (void* p = take(free_, size)) {
      cached_ -= size;
      allocated_ += size;
      live_[p] = size;
      ++hits_;
      return p;
    }
    void* p = malloc_locked(size);
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
      int pool_id = 0;
      auto own = owner_.find(p);
      if (own != owner_.end()) {
        pool_id = own->second;
      } else if (capture_pool_) {
        pool_id = capture_pool_;  // allocated before the capture, freed in it: the graph's now
        pools_[pool_id].blocks.insert(p);
        owner_[p] = pool_id;
      }
      if (pool_id)
        pools_[pool_id].free[size].push_back(p);
      else
        free_[size].push_back(p);
      cached_ += size;
    } catch (...) {
      cudaFree(p);  // no memory to remember it: give it back to the driver
      cudaGetLastError();
    }
  }

  // Graph pools: open one for a capture, close it when the capture ends, release it (its
  // blocks rejoin the shared cache) when the graph is destroyed.
  int open_pool() {
    std::lock_guard<std::mutex> lock(mu_);
    const int id = ++last_pool_;
    pools_[id];
    capture_pool_ = id;
    return id;
  }
  void close_pool() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    capture_pool_ = 0;
  }
  void release_pool(int id) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(id);
    if (it == pools_.end()) return;
    try {
      for (auto& kv : it->second.free)
        for (void* p : kv.second) free_[kv.first].push_back(p);
    } catch (...) {
    }
    for (void* p : it->second.blocks) owner_.erase(p);  // live ones go to the cache when freed
    if (capture_pool_ == id) capture_pool_ = 0;
    pools_.erase(it);
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
  struct Pool {
    std::unordered_map<size_t, std::vector<void*>> free;  // rounded size -> free blocks
    std::unordered_set<void*> blocks;                     // every block the pool owns
  };

  static void* take(std::unordered_map<size_t, std::vector<void*>>& lists, size_t size) {
    auto it = lists.find(size);
    if (it == lists.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    return p;
  }

  void* malloc_locked(size_t size) {
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation && !capture_pool_) {
      cudaGetLastError();  // out of memory is not sticky: clear it, free the cache, retry
      release_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
    }
    ++mallocs_;
    return p;
  }

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
  std::unordered_map<int, Pool> pools_;                  // graph pools by id
  std::unordered_map<void*, int> owner_;                 // block -> the pool that owns it
  int capture_pool_ = 0, last_pool_ = 0;                 // 0: not capturing
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

// ---------------------------------------------------------------- CUDA graphs
namespace {
cudaEvent_t g_capture_ready = nullptr;
int g_capture_pool = 0;
}  // namespace

void capture_begin() {
  require_device();
  if (g_capturing) throw std::runtime_error("fastconv.cuda: a graph capture is already running");
  if (!g_capture_stream) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_capture_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&g_capture_ready, cudaEventDisableTiming));
  }
  // Nothing is recorded before the work already queued on stream 0 has been ordered before it.
  CUDA_CHECK(cudaEventRecord(g_capture_ready, 0));
  CUDA_CHECK(cudaStreamWaitEvent(g_capture_stream, g_capture_ready, 0));
  // Relaxed: the allocator may call cudaMalloc while recording (never recorded itself).
  CUDA_CHECK(cudaStreamBeginCapture(g_capture_stream, cudaStreamCaptureModeRelaxed));
  g_capture_pool = allocator().open_pool();
  g_stream = g_capture_stream;
  g_capturing = true;
}

void capture_abort() noexcept {
  if (!g_capturing) return;
  g_stream = 0;
  g_capturing = false;
  allocator().close_pool();
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(g_capture_stream, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  // The pool's blocks may be named by kernels queued before the abort: wait, then release.
  cudaDeviceSynchronize();
  cudaGetLastError();
  allocator().release_pool(g_capture_pool);
  g_capture_pool = 0;
}

Graph* capture_end() {
  if (!g_capturing) throw std::runtime_error("fastconv.cuda: capture_end without capture_begin");
  g_stream = 0;
  g_capturing = false;
  allocator().close_pool();
  const int pool = g_capture_pool;
  g_capture_pool = 0;
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(g_capture_stream, &graph);
  if (err != cudaSuccess || !graph) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    allocator().release_pool(pool);
    throw std::runtime_error(std::string("fastconv.cuda: the graph capture failed (an op copied "
                                         "to or from the host, or synchronised, while recording): ") +
                             cudaGetErrorString(err));
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(graph);
    allocator().release_pool(pool);
    throw_cuda_error(err, "cudaGraphInstantiate", __FILE__, __LINE__);
  }
  size_t nodes = 0;
  cudaGraphGetNodes(graph, nullptr, &nodes);
  Graph* g = new Graph();
  g->graph_ = graph;
  g->exec_ = exec;
  g->pool_ = pool;
  g->nodes_ = nodes;
  return g;
}

void Graph::replay() {
  if (g_capturing) throw std::runtime_error("fastconv.cuda: cannot replay a graph while capturing");
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), 0));
}

Graph::~Graph() {
  // Replays still queued use the pool's blocks; stream 0 orders later users after them, and
  // cudaGraphExecDestroy waits for nothing, so only the blocks' ownership changes here.
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  cudaGetLastError();
  allocator().release_pool(pool_);
}

// ---------------------------------------------------------------- numerics
namespace {
std::atomic<bool> g_allow_tf32{false};
}
void set_allow_tf32(bool allow) noexcept { g_allow_tf32.store(allow); }
bool allow_tf32() noexcept { return g_allow_tf32.load(); }

}  // namespace cuda
}  // namespace fastconv
