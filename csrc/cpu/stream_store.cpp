// streams_output's threshold: half the last-level cache, read once (stream_store.h).
#include "cpu/stream_store.h"

#include <atomic>
#include <cstdio>
#include <string>
#if defined(__linux__)
#include <unistd.h>
#endif

namespace fastconv {
namespace cpu {
namespace {

// The size of cpu0's largest cache as sysfs gives it ("8192K"): what this core's share of
// the last level really is. sysconf's figure can be the whole package's (64 MiB on the 8 x 8 MiB
// EPYC, whose cores see one 8 MiB slice); it is the fallback, then 8 MiB.
int64_t last_level_cache_bytes() {
  int64_t best = 0;
#if defined(__linux__)
  for (int index = 0; index < 8; ++index) {
    const std::string path = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    long long value = 0;
    char unit = 0;
    const int got = std::fscanf(f, "%lld%c", &value, &unit);
    std::fclose(f);
    if (got < 1 || value <= 0) continue;
    const int64_t bytes = unit == 'K' ? value << 10 : unit == 'M' ? value << 20 : value;
    if (bytes > best) best = bytes;
  }
#if defined(_SC_LEVEL3_CACHE_SIZE)
  if (best <= 0) best = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
#endif
  return best > 0 ? best : int64_t(8) << 20;
}

int64_t default_threshold() {
#ifdef FASTCONV_STREAM_STORES
  return last_level_cache_bytes() / 2;
#else
  return INT64_MAX;  // no streaming stores on this architecture
#endif
}

std::atomic<int64_t>& threshold() {
  static std::atomic<int64_t> t{default_threshold()};
  return t;
}

}  // namespace

bool streams_output(int64_t bytes) { return bytes > threshold().load(std::memory_order_relaxed); }

int64_t stream_store_threshold() { return threshold().load(); }

void set_stream_store_threshold(int64_t bytes) {
  threshold().store(bytes < 0 ? default_threshold() : bytes);
}

}  // namespace cpu
}  // namespace fastconv
