// Compiler plumbing shared by the kernels: runtime CPU dispatch, forced
// inlining, vectorisation pragmas and compile-time layer widths.
#pragma once

#include <cstddef>

// Runtime CPU dispatch, decided here and nowhere else: the hot entry points of
// Mlp are compiled for AVX-512, AVX2+FMA and baseline x86-64, and the loader
// picks one (GCC ifunc). Everything they call is force-inlined (LL_INLINE,
// LL_LAMBDA), so each clone gets its own vector code. livelearn::runtime_dispatch()
// reports the result to callers built separately (the Python module).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(LIVELEARN_NO_DISPATCH)
#define LIVELEARN_RUNTIME_DISPATCH 1
#define LL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LIVELEARN_RUNTIME_DISPATCH 0
#define LL_CLONES
#endif

#define LL_INLINE inline __attribute__((always_inline))
#define LL_LAMBDA __attribute__((always_inline))
// Vectorise a loop or reduction without -ffast-math (which would break the
// non-finite guard): -fopenmp-simd honours these, no OpenMP runtime is linked.
#define LL_SIMD_SUM _Pragma("omp simd reduction(+:s)")
#define LL_SIMD _Pragma("omp simd")

namespace livelearn::kernels {

// Layer widths known at compile time let the compiler keep whole rows in
// registers and reduce in-register; common widths get their own code and
// anything else takes the runtime-sized path.
template <std::size_t N>
struct Fixed {
  static constexpr std::size_t get(std::size_t) { return N; }
};
struct Dynamic {
  static std::size_t get(std::size_t n) { return n; }
};

// Calls f(Fixed<n>{}) for a common width n, else f(Dynamic{}).
template <class F>
LL_INLINE void with_width(std::size_t n, F&& f) {
  switch (n) {
    case 1:
      f(Fixed<1>{});
      return;
    case 8:
      f(Fixed<8>{});
      return;
    case 16:
      f(Fixed<16>{});
      return;
    case 32:
      f(Fixed<32>{});
      return;
    case 64:
      f(Fixed<64>{});
      return;
    default:
      f(Dynamic{});
      return;
  }
}

}  // namespace livelearn::kernels
