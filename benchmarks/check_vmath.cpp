// Standalone check and timing of the element-wise math kernels (csrc/cpu/vmath.cpp and the
// ISA folders' vmath_*.cpp).
//
// For every ISA this CPU runs, compares exp, tanh and sigmoid against float64 libm over a
// sweep of inputs (dense in [-20, 20], sparse out to +-1e4) plus the special values (0, -0,
// +-inf, NaN, the overflow and underflow edges), prints the worst relative error, then times
// each kernel on a 1M-element array (napkin floor: 8 MB in + 4 MB out per call).
//
//   mkdir -p build/vm
//   c++ -O3 -std=c++17 -DFASTCONV_X86 -Icsrc -c csrc/cpu/avx2/vmath_avx2.cpp -mavx2 -mfma -o build/vm/a.o
//   c++ -O3 -std=c++17 -DFASTCONV_X86 -Icsrc -c csrc/cpu/avx512/vmath_avx512.cpp -mavx512f -mavx512dq -o build/vm/b.o
//   c++ -O3 -std=c++17 -DFASTCONV_X86 -Icsrc benchmarks/check_vmath.cpp csrc/cpu/vmath.cpp
//       csrc/cpu/isa.cpp build/vm/a.o build/vm/b.o -o build/vm/check_vmath && build/vm/check_vmath
// Exit status 1 when any error is above 1e-6 (relative; in the denormal range, more than one denormal step).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/vmath.h"

using namespace fastconv::cpu;

static double ref(int f, double x) {
  if (f == 0) return std::exp(x);
  if (f == 1) return std::tanh(x);
  return 1.0 / (1.0 + std::exp(-x));
}

int main() {
  struct Named { const char* isa; const VecMath* vm; };   // every ISA this CPU runs
  std::vector<Named> isas = {{"generic", &kVecMathGeneric}};
#ifdef FASTCONV_X86
  if (isa_supported(Isa::Avx2)) isas.push_back({"avx2", &kVecMathAvx2});
  if (isa_supported(Isa::Avx512)) isas.push_back({"avx512", &kVecMathAvx512});
#endif
  std::vector<float> xs;
  for (int i = -2000000; i <= 2000000; ++i) xs.push_back(float(i) * 1e-5f);   // [-20, 20]
  for (int i = -100000; i <= 100000; ++i) xs.push_back(float(i) * 0.1f);     // [-1e4, 1e4]
  for (float e : {88.7f, 88.72f, 88.73f, 89.f, 89.5f, -87.3f, -103.f, -103.9f, -104.f, -105.f,
                  1e-8f, -1e-8f, 1e-30f, 0.f, -0.f, 0.625f, -0.625f, 0.62499f})
    xs.push_back(e);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {inf, -inf, std::numeric_limits<float>::quiet_NaN()};
  const char* names[] = {"exp", "tanh", "sigmoid"};
  int bad = 0;
  for (const Named& named : isas) {
    const VecMath* vm = named.vm;
    VecFn fns[] = {vm->exp, vm->tanh, vm->sigmoid};
    for (int f = 0; f < 3; ++f) {
      std::vector<float> y(xs.size() + 1, 12345.f);   // y[n] is a guard: must stay untouched
      fns[f](xs.data(), 0.f, y.data(), int64_t(xs.size()));
      double worst = 0; float worst_x = 0;
      for (size_t i = 0; i < xs.size(); ++i) {
        const double r = ref(f, double(xs[i]));
        const double rf = double(float(r));  // the float it should round to
        double err;
        if (std::isinf(rf) || std::isinf(y[i])) err = (rf == double(y[i])) ? 0 : 1;
        else if (std::fabs(r) < 1.2e-38) err = std::fabs(double(y[i]) - r) > 1.5e-45 ? 1 : 0;  // denormal
        else err = std::fabs(double(y[i]) - r) / std::fabs(r);
        if (err > worst) { worst = err; worst_x = xs[i]; }
      }
      if (y[xs.size()] != 12345.f) { std::printf("%s %s wrote past the end\n", named.isa, names[f]); ++bad; }
      float sy[3];
      fns[f](specials, 0.f, sy, 3);
      const bool sp_ok = f == 0 ? (sy[0] == inf && sy[1] == 0.f && std::isnan(sy[2]))
                         : f == 1 ? (sy[0] == 1.f && sy[1] == -1.f && std::isnan(sy[2]))
                                  : (sy[0] == 1.f && sy[1] == 0.f && std::isnan(sy[2]));
      float s100[2] = {-100.f, 100.f}, o100[2];
      fns[f](s100, 0.f, o100, 2);
      std::printf("%-8s %-8s worst rel err %.3g at x=%.9g  inf/-inf/NaN -> %g %g %g %s  f(-100)=%g f(100)=%g\n",
                  named.isa, names[f], worst, worst_x, sy[0], sy[1], sy[2], sp_ok ? "ok" : "WRONG",
                  o100[0], o100[1]);
      if (worst > 1e-6 || !sp_ok) ++bad;
    }
    // timing: 1M elements
    std::vector<float> a(1 << 20), b(1 << 20);
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 2001) - 1000) * 0.01f;
    VecFn all[] = {vm->relu, vm->exp, vm->tanh, vm->sigmoid};
    const char* an[] = {"relu", "exp", "tanh", "sigmoid"};
    for (int f = 0; f < 4; ++f) {
      double best = 1e9;
      for (int rep = 0; rep < 20; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        all[f](a.data(), 0.f, b.data(), int64_t(a.size()));
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::printf("%-8s %-8s 1M elements: %.3f ms (%.2f ns/element)\n", named.isa, an[f], best * 1e3, best * 1e9 / a.size());
    }
  }
  std::printf(bad ? "FAILED\n" : "all ok\n");
  return bad ? 1 : 0;
}
