// The process-wide ISA choice (isa.h): the levels in priority order with the CPU features each
// needs, the best supported one picked once, FASTCONV_ISA honoured.
//
// This file is baseline x86-64 and only asks cpuid; nothing here executes an instruction the
// CPU may lack. On other architectures (FASTCONV_X86 undefined) only the generic level is in
// the build.
#include "cpu/isa.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fastconv {
namespace cpu {

namespace {

#ifdef FASTCONV_X86
// __builtin_cpu_supports also checks (GCC >= 7, Clang) that the OS saves the ymm/zmm state
// (XGETBV), so a level is never picked on a CPU whose OS has AVX disabled.
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

struct IsaLevel {
  Isa isa;
  const char* name;          // what FASTCONV_ISA and fastconv.cpu_isa() call it
  bool (*cpu_supports)();    // null: not in this build
};

//                  level         name      needs
const IsaLevel kLevels[] = {
#ifdef FASTCONV_X86
    {Isa::Avx512, "avx512", cpu_has_avx512},
    {Isa::Avx2, "avx2", cpu_has_avx2_fma},
#else
    {Isa::Avx512, "avx512", nullptr},
    {Isa::Avx2, "avx2", nullptr},
#endif
    {Isa::Generic, "generic", cpu_any},
};

const IsaLevel& level(Isa isa) {
  for (const IsaLevel& l : kLevels)
    if (l.isa == isa) return l;
  return kLevels[sizeof(kLevels) / sizeof(kLevels[0]) - 1];
}

bool supported(const IsaLevel& l) { return l.cpu_supports && l.cpu_supports(); }

Isa choose() {
  Isa best = Isa::Generic;
  for (const IsaLevel& l : kLevels)
    if (supported(l)) { best = l.isa; break; }
  const char* forced = std::getenv("FASTCONV_ISA");
  if (!forced || !*forced) return best;
  for (const IsaLevel& l : kLevels) {
    if (std::strcmp(l.name, forced) != 0) continue;
    if (supported(l)) return l.isa;
    std::fprintf(stderr, "fastconv: FASTCONV_ISA=%s is not supported by this CPU or build; using %s\n",
                 forced, isa_name(best));
    return best;
  }
  std::fprintf(stderr, "fastconv: FASTCONV_ISA=%s is not one of avx512, avx2, generic; using %s\n",
               forced, isa_name(best));
  return best;
}

}  // namespace

const char* isa_name(Isa isa) { return level(isa).name; }

bool isa_supported(Isa isa) { return supported(level(isa)); }

Isa selected_isa() {
  static const Isa chosen = choose();  // thread-safe, once
  return chosen;
}

}  // namespace cpu
}  // namespace fastconv
