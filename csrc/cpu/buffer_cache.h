// A cache of large output buffers, reused across calls.
//
// Why: a training step allocates the same large arrays every step (each layer's output, its
// gradients). glibc hands large freed blocks back to the kernel (munmap, or trimming the top
// of the heap), so the next step's array page-faults on first touch: one fault per 4 KiB page,
// some 640 faults in a LeNet-5 step at batch 64, a visible share of the step on a small VM.
// The bindings allocate every output through acquire(); when NumPy frees the array, release()
// keeps the block (already mapped and touched) for the next request of about the same size.
//
// Policy, kept simple on purpose:
//  - only blocks of at least kMinBytes go through the cache; smaller ones are cheap for malloc;
//  - a request takes the smallest idle block whose capacity is in [bytes, bytes + bytes / 4]
//    (so a batch-32 array never pins a batch-64 block), else a fresh 64-byte aligned block;
//  - idle blocks total at most the limit (FASTCONV_BUFFER_CACHE_MB, a whole number of MiB,
//    default 256; 0 turns the cache off; anything else keeps the default and is reported by
//    env_problem()); releasing past it frees the oldest idle blocks first.
// Blocks are only reused after NumPy has dropped the array that held them, so two live arrays
// never share memory, and every kernel writes its whole output, so stale contents never show.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fastconv {
namespace buffer_cache {

constexpr size_t kMinBytes = size_t(64) << 10;

// A block of at least `bytes` bytes, 64-byte aligned. Throws std::bad_alloc when out of memory.
void* acquire(size_t bytes);
// Give back a block from acquire(); it is kept idle for reuse or freed.
void release(void* block);

struct Stats {
  uint64_t hits = 0;         // requests served from an idle block
  uint64_t misses = 0;       // requests of >= kMinBytes that allocated a fresh block
  size_t idle_bytes = 0;     // capacity held by idle blocks now
  size_t idle_blocks = 0;
  size_t limit_bytes = 0;    // the cap on idle_bytes (0: the cache is off)
};
Stats stats();
// Free every idle block (blocks in use are untouched). Returns the bytes freed.
size_t clear();
// Set the cap on idle bytes (0 turns caching off and frees the idle blocks).
void set_limit(size_t bytes);
// Why FASTCONV_BUFFER_CACHE_MB could not be read (then the default limit holds), or "".
std::string env_problem();

}  // namespace buffer_cache
}  // namespace fastconv
