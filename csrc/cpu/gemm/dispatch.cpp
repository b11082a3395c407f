// sgemm's run-time dispatch: ONE table of micro-kernels in priority order, each with the
// CPU features it needs and the blocking tuned for it. The first entry this CPU supports
// is picked once, on first use; FASTCONV_ISA=avx512|avx2|generic forces an entry, and an
// entry the CPU (or this build) lacks falls back to the best supported one with a warning
// on stderr.
//
// The x86 kernels live in files compiled with their own -m flags (CMakeLists.txt); this
// file is baseline x86-64 and only takes their addresses, so nothing here executes an
// instruction the CPU may lack. On other architectures (FASTCONV_X86 undefined) the table
// holds the generic kernel alone.
//
// Blocking (floats; L1/L2/L3 targets for the shapes of the CPUs each ISA runs on):
//   avx512 12x32: KC 256 -> a B micro-panel 256x32 = 32 KiB (L1 48 KiB on Ice Lake+/Zen4),
//                 MC 192 -> an A block 192x256 = 192 KiB (L2 1-2 MiB), NC 3072 -> B block
//                 3 MiB (L3). From BLIS's SKX values (MC 480, KC 384, NC 3072 for 32x12),
//                 shrunk for the transposed tile. NOT tuned on hardware (none here).
//   avx2 6x16:    KC 256 -> B micro-panel 256x16 = 16 KiB (L1 32 KiB), MC 144 -> A block
//                 144 KiB (L2 512 KiB on Zen/Zen2), NC 4080 -> B block 4 MiB (L3 8+ MiB).
//                 BLIS's Zen values. Checked on the development EPYC (Zen 1) with
//                 benchmarks/gemm_harness.cpp: MC 72..240 x KC 192..384 all land within the
//                 noise (35-37 GFLOP/s, one thread, n = 512 and 2048).
//   generic 6x8:  KC 256 -> B micro-panel 8 KiB, MC 96, NC 2048.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/gemm/sgemm_kernels.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {

#ifdef FASTCONV_X86
// __builtin_cpu_supports also checks (GCC >= 7, Clang) that the OS saves the ymm/zmm state
// (XGETBV), so a kernel is never picked on a CPU whose OS has AVX disabled.
bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
bool cpu_any() { return true; }

//                  isa        needs             micro-kernel         MR  NR   MC   KC    NC
const SgemmKernel kKernels[] = {
#ifdef FASTCONV_X86
    {"avx512", cpu_has_avx512, sgemm_avx512_12x32, 12, 32, 192, 256, 3072},
    {"avx2", cpu_has_avx2_fma, sgemm_avx2_6x16, 6, 16, 144, 256, 4080},
#endif
    {"generic", cpu_any, sgemm_generic_6x8, 6, 8, 96, 256, 2048},
};
// Names FASTCONV_ISA may give, on any build.
const char* const kKnownIsas[] = {"avx512", "avx2", "generic"};

const SgemmKernel& best_supported() {
  for (const SgemmKernel& k : kKernels)
    if (k.cpu_supports()) return k;
  return kKernels[sizeof(kKernels) / sizeof(kKernels[0]) - 1];
}

const SgemmKernel& choose() {
  const SgemmKernel& best = best_supported();
  const char* forced = std::getenv("FASTCONV_ISA");
  if (!forced || !*forced) return best;
  if (const SgemmKernel* k = supported_kernel(forced)) return *k;
  bool known = false;
  for (const char* name : kKnownIsas) known = known || std::strcmp(name, forced) == 0;
  std::fprintf(stderr,
               known ? "fastconv: FASTCONV_ISA=%s is not supported by this CPU or build; using %s\n"
                     : "fastconv: FASTCONV_ISA=%s is not one of avx512, avx2, generic; using %s\n",
               forced, best.isa);
  return best;
}

}  // namespace

const SgemmKernel* supported_kernel(const char* isa) {
  for (const SgemmKernel& k : kKernels)
    if (std::strcmp(k.isa, isa) == 0) return k.cpu_supports() ? &k : nullptr;
  return nullptr;
}

const SgemmKernel& selected_kernel() {
  static const SgemmKernel& chosen = choose();  // thread-safe, once
  return chosen;
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
