// sgemm's run-time dispatch: ONE table of micro-kernels in priority order, each with the ISA
// level it needs (csrc/cpu/isa.h) and the blocking tuned for it. The first entry the selected
// level may run is picked once, on first use; FASTCONV_ISA moves it with every other op family.
//
// The x86 micro-kernels live in csrc/cpu/avx2/ and csrc/cpu/avx512/, compiled with their own
// -m flags (CMakeLists.txt); this file is baseline and only takes their addresses, so nothing
// here executes an instruction the CPU may lack. On other architectures (FASTCONV_X86
// undefined) the table holds the generic kernel alone.
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
//                 run-to-run noise of one another (one thread, n = 512 and 2048).
//   generic 6x8:  KC 256 -> B micro-panel 8 KiB, MC 96, NC 2048.
#include "cpu/gemm/sgemm_kernels.h"
#include "cpu/isa.h"

namespace fastconv {
namespace cpu {
namespace gemm {

namespace {

//                    needs        micro-kernel        MR  NR   MC   KC    NC
const SgemmKernel kKernels[] = {
#ifdef FASTCONV_X86
    {Isa::Avx512, sgemm_avx512_12x32, 12, 32, 192, 256, 3072},
    {Isa::Avx2, sgemm_avx2_6x16, 6, 16, 144, 256, 4080},
#endif
    {Isa::Generic, sgemm_generic_6x8, 6, 8, 96, 256, 2048},
};

}  // namespace

const SgemmKernel& selected_kernel() {
  static const SgemmKernel& chosen = first_runnable(kKernels);  // thread-safe, once
  return chosen;
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
