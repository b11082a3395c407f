// The output-buffer cache: see buffer_cache.h for why and for the policy.
//
// Layout of a block: a 64-byte header holding its capacity, then the caller's bytes, so
// release() needs only the pointer (NumPy's capsule gives back nothing else).
#include "cpu/buffer_cache.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace fastconv {
namespace buffer_cache {
namespace {

constexpr size_t kHeader = 64;
constexpr size_t kPage = 4096;

struct Idle {
  char* raw;        // what aligned_alloc returned
  size_t capacity;  // usable bytes after the header
};

constexpr size_t kDefaultLimit = size_t(256) << 20;

// The limit FASTCONV_BUFFER_CACHE_MB asks for: a whole number of MiB, nothing else (no sign,
// exponent, fraction or unit), at most what a size_t holds in bytes. Anything else leaves the
// default and a message in *problem (fastconv/__init__.py warns with it at import), instead of
// strtoll's silent readings ("1e3" as 1, "abc" as the default, 2^54 wrapping to 0).
size_t limit_from_env(std::string* problem) {
  const char* s = std::getenv("FASTCONV_BUFFER_CACHE_MB");
  if (!s || !*s) return kDefaultLimit;
  const std::string text(s);
  size_t mb = 0;
  bool ok = true;
  for (char ch : text) {
    if (ch < '0' || ch > '9' || mb > ((SIZE_MAX >> 20) - size_t(ch - '0')) / 10) {
      ok = false;
      break;
    }
    mb = mb * 10 + size_t(ch - '0');
  }
  if (ok) return mb << 20;
  *problem = "FASTCONV_BUFFER_CACHE_MB='" + text + "' is not a whole number of MiB between 0 and " +
             std::to_string(SIZE_MAX >> 20) + "; the output-buffer cache keeps its default " +
             "limit of 256 MiB (set FASTCONV_BUFFER_CACHE_MB=0 to turn it off)";
  return kDefaultLimit;
}

struct Cache {
  std::mutex mutex;
  std::vector<Idle> idle;  // oldest first
  size_t idle_bytes = 0;
  std::string env_problem;  // why FASTCONV_BUFFER_CACHE_MB was not taken, or empty
  size_t limit = limit_from_env(&env_problem);
  uint64_t hits = 0, misses = 0;

  // Free the oldest idle blocks until idle_bytes + extra fits the limit. Holds the mutex.
  void evict_for(size_t extra) {
    size_t drop = 0;
    while (drop < idle.size() && idle_bytes + extra > limit) {
      idle_bytes -= idle[drop].capacity;
      std::free(idle[drop].raw);
      ++drop;
    }
    idle.erase(idle.begin(), idle.begin() + drop);
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: arrays may outlive static destructors
  return *c;
}

size_t& capacity_of(char* raw) { return *reinterpret_cast<size_t*>(raw); }

}  // namespace

void* acquire(size_t bytes) {
  Cache& c = cache();
  if (bytes >= kMinBytes) {
    std::lock_guard<std::mutex> lock(c.mutex);
    size_t best = c.idle.size();
    for (size_t i = 0; i < c.idle.size(); ++i) {
      const size_t cap = c.idle[i].capacity;
      if (cap >= bytes && cap - bytes <= bytes / 4 &&
          (best == c.idle.size() || cap < c.idle[best].capacity))
        best = i;
    }
    if (best != c.idle.size()) {
      char* raw = c.idle[best].raw;
      c.idle_bytes -= c.idle[best].capacity;
      c.idle.erase(c.idle.begin() + best);
      ++c.hits;
      return raw + kHeader;
    }
    ++c.misses;
  }
  // Large blocks are rounded up to whole pages, so a block fits any request that rounds alike.
  const size_t capacity = bytes >= kMinBytes ? (bytes + kPage - 1) / kPage * kPage
                                             : (bytes + kHeader - 1) / kHeader * kHeader;
  char* raw = static_cast<char*>(std::aligned_alloc(kHeader, kHeader + (capacity ? capacity : kHeader)));
  if (!raw) throw std::bad_alloc();
  capacity_of(raw) = capacity;
  return raw + kHeader;
}

void release(void* block) {
  if (!block) return;
  char* raw = static_cast<char*>(block) - kHeader;
  const size_t capacity = capacity_of(raw);
  Cache& c = cache();
  if (capacity >= kMinBytes) {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (capacity <= c.limit) {
      c.evict_for(capacity);
      c.idle.push_back({raw, capacity});
      c.idle_bytes += capacity;
      return;
    }
  }
  std::free(raw);
}

Stats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  Stats s;
  s.hits = c.hits;
  s.misses = c.misses;
  s.idle_bytes = c.idle_bytes;
  s.idle_blocks = c.idle.size();
  s.limit_bytes = c.limit;
  return s;
}

size_t clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const size_t freed = c.idle_bytes;
  for (const Idle& b : c.idle) std::free(b.raw);
  c.idle.clear();
  c.idle_bytes = 0;
  return freed;
}

std::string env_problem() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.env_problem;
}

void set_limit(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.limit = bytes;
  c.evict_for(0);
}

}  // namespace buffer_cache
}  // namespace fastconv
