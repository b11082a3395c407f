// Which instruction set the CPU kernels run with: one choice for the whole process, and the
// rule every op family's dispatch table follows.
//
// The ISAs are levels, each a superset of the one before: generic (baseline x86-64 or any
// other CPU) < avx2 (AVX2 + FMA) < avx512 (AVX-512 F/DQ/BW/VL on top of AVX2). selected_isa()
// is the best level this CPU and this build support, picked once on first use;
// FASTCONV_ISA=avx512|avx2|generic forces a level, and one the CPU (or build) lacks falls back
// to the best supported level with a warning on stderr. fastconv.cpu_isa() reports it.
//
// Each op family keeps ONE table of its implementations in priority order, each entry naming
// the level it needs (simdjson's and BLIS's pattern):
//   sgemm   csrc/cpu/gemm/dispatch.cpp   the micro-kernel and its blocking
//   conv2d  csrc/cpu/conv2d.cpp          which fast algorithms (Winograd, direct) there are
//   pool2d  csrc/cpu/pool2d.cpp          the 2x2 stride-2 max-pool training pair
//   vmath   csrc/cpu/vmath.cpp           the element-wise exp/tanh/activation kernels
// and uses the first entry whose level is at most the selected one (first_runnable below), so
// FASTCONV_ISA=avx2 on an AVX-512 machine runs every family's AVX2 entry, and =generic turns
// every ISA-specific kernel off at once (the tests use that to check the portable paths).
//
// Files: the kernels compiled with an ISA's flags live in csrc/cpu/<isa>/ (CMakeLists.txt
// gives each folder its flags); everything else, the generic entries included, is baseline.
#pragma once
#include <cstddef>

namespace fastconv {
namespace cpu {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

// "generic", "avx2" or "avx512".
const char* isa_name(Isa isa);

// Can this CPU (and its OS, and this build) run the kernels of `isa`?
bool isa_supported(Isa isa);

// The level the process runs at, chosen once (FASTCONV_ISA honoured, see above).
Isa selected_isa();

// The first entry of a dispatch table that the selected level may run. Entries are in
// priority order, each with a member `Isa needs`; the last one needs Isa::Generic, so there is
// always one.
template <class Entry, std::size_t N>
const Entry& first_runnable(const Entry (&table)[N]) {
  static_assert(N > 0, "a dispatch table needs at least its generic entry");
  const Isa level = selected_isa();
  for (const Entry& e : table)
    if (static_cast<int>(e.needs) <= static_cast<int>(level)) return e;
  return table[N - 1];
}

}  // namespace cpu
}  // namespace fastconv
