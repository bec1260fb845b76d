// cuda_sim.h: the CUDA built-ins for minunet's CPU simulator.
//
// g++ force-includes this file (-include cuda_sim.h) before a kernels/*.cu file, so the unchanged CUDA
// source compiles as ordinary C++. Each CUDA thread of a block runs as a cooperative fiber on one OS thread
// (runtime.cpp); a barrier or a warp shuffle is a point where the fiber hands control back to the scheduler.
//
// - Qualifiers (__global__, __device__, ...) disappear; __shared__ becomes static: one array, shared by every
//   fiber (one launch runs at a time), and a global of its own, so AddressSanitizer puts a redzone after
//   it. build.py turns `extern __shared__ T name[];` into a plain extern declaration that the generated
//   wrapper defines as a name of the one storage of dynamic shared memory. At the start of every block the
//   runtime fills the kernel's arrays with the poison word 0x7FFFFFFF (a NaN as float and as double, INT_MAX
//   as int), so a read nobody wrote shows up.
// - threadIdx/blockIdx/blockDim/gridDim are globals the scheduler sets before it resumes a fiber.
// - __syncthreads() and the warp functions are macros, so they can record the line they are called from:
//   the runtime names that line when threads of a block disagree about which barrier they are at.
#pragma once

#include <math.h>
#include <stdio.h>

#define MINUNET_SIM_HIDDEN __attribute__((visibility("hidden")))

// ---- qualifiers -------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
// __restrict__ is already a g++ keyword.

// ---- built-in vector types and the thread coordinates -----------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

extern MINUNET_SIM_HIDDEN uint3 threadIdx;
extern MINUNET_SIM_HIDDEN uint3 blockIdx;
extern MINUNET_SIM_HIDDEN dim3 blockDim;
extern MINUNET_SIM_HIDDEN dim3 gridDim;
static const int warpSize = 32;

// ---- the runtime's interface (runtime.cpp) ----------------------------------------------------------------
namespace minunet_sim {
enum WarpOp { SHFL_IDX = 1, SHFL_UP, SHFL_DOWN, SHFL_XOR, SYNCWARP, BALLOT, ANY, ALL };
MINUNET_SIM_HIDDEN void syncthreads(int line, const char* file);
// A warp-level rendezvous: the fiber waits until the lanes named in `mask` reach the same call, then the
// scheduler writes the value of the source lane into *result.
MINUNET_SIM_HIDDEN void warp_op(int op, unsigned mask, const void* value, void* result, int size, int arg,
                                int width, int line, const char* file);
[[noreturn]] MINUNET_SIM_HIDDEN void trap(const char* what, int line, const char* file);

// __syncwarp() and __syncwarp(mask), with the caller's line.
struct SyncwarpAt {
    int line;
    const char* file;
    void call(unsigned mask = 0xffffffffu) { warp_op(SYNCWARP, mask, nullptr, nullptr, 0, 0, 32, line, file); }
};

// __ballot_sync / __any_sync / __all_sync: a rendezvous that combines every lane's predicate.
template <int Op>
inline unsigned vote(int line, const char* file, unsigned mask, int predicate) {
    int value = predicate != 0;
    unsigned result;
    warp_op(Op, mask, &value, &result, 4, 0, 32, line, file);
    return result;
}

template <int Op, class T>
inline T shfl(int line, const char* file, unsigned mask, T var, int arg, int width = 32) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    T result;
    warp_op(Op, mask, &var, &result, (int)sizeof(T), arg, width, line, file);
    return result;
}
}  // namespace minunet_sim

#define __syncthreads() ::minunet_sim::syncthreads(__LINE__, __FILE__)
#define __syncwarp(...) ::minunet_sim::SyncwarpAt{__LINE__, __FILE__}.call(__VA_ARGS__)
#define __shfl_sync(...) ::minunet_sim::shfl<::minunet_sim::SHFL_IDX>(__LINE__, __FILE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::minunet_sim::shfl<::minunet_sim::SHFL_UP>(__LINE__, __FILE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::minunet_sim::shfl<::minunet_sim::SHFL_DOWN>(__LINE__, __FILE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::minunet_sim::shfl<::minunet_sim::SHFL_XOR>(__LINE__, __FILE__, __VA_ARGS__)
#define __ballot_sync(...) ::minunet_sim::vote<::minunet_sim::BALLOT>(__LINE__, __FILE__, __VA_ARGS__)
#define __any_sync(...) (int)::minunet_sim::vote<::minunet_sim::ANY>(__LINE__, __FILE__, __VA_ARGS__)
#define __all_sync(...) (int)::minunet_sim::vote<::minunet_sim::ALL>(__LINE__, __FILE__, __VA_ARGS__)
#define __trap() ::minunet_sim::trap("__trap()", __LINE__, __FILE__)
#undef assert
#define assert(e) ((e) ? (void)0 : ::minunet_sim::trap("assertion failed: " #e, __LINE__, __FILE__))
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

// ---- atomics: GCC __atomic builtins, relaxed as CUDA's ---------------------------------------------------
// Fibers never switch inside one, so a plain read-modify-write would do; the builtins make the race checker
// (ThreadSanitizer, which knows them) see an atomic, so that threads adding to one counter are no race.
namespace minunet_sim {
template <class T, class F>
inline T atomic_update(T* address, F next) {
    T old, desired;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
        desired = next(old);
    } while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
}  // namespace minunet_sim
#define MINUNET_SIM_ATOMIC(name, T, expr) \
    inline T name(T* address, T val) { \
        return ::minunet_sim::atomic_update(address, [val](T old) { return (T)(expr); }); \
    }
MINUNET_SIM_ATOMIC(atomicAdd, int, old + val)
MINUNET_SIM_ATOMIC(atomicAdd, unsigned int, old + val)
MINUNET_SIM_ATOMIC(atomicAdd, unsigned long long, old + val)
MINUNET_SIM_ATOMIC(atomicAdd, float, old + val)
MINUNET_SIM_ATOMIC(atomicAdd, double, old + val)
MINUNET_SIM_ATOMIC(atomicSub, int, old - val)
MINUNET_SIM_ATOMIC(atomicSub, unsigned int, old - val)
MINUNET_SIM_ATOMIC(atomicMax, int, old > val ? old : val)
MINUNET_SIM_ATOMIC(atomicMax, unsigned int, old > val ? old : val)
MINUNET_SIM_ATOMIC(atomicMax, long long, old > val ? old : val)
MINUNET_SIM_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
MINUNET_SIM_ATOMIC(atomicMin, int, old < val ? old : val)
MINUNET_SIM_ATOMIC(atomicMin, unsigned int, old < val ? old : val)
MINUNET_SIM_ATOMIC(atomicMin, long long, old < val ? old : val)
MINUNET_SIM_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
MINUNET_SIM_ATOMIC(atomicExch, int, val)
MINUNET_SIM_ATOMIC(atomicExch, unsigned int, val)
MINUNET_SIM_ATOMIC(atomicExch, unsigned long long, val)
MINUNET_SIM_ATOMIC(atomicExch, float, val)
MINUNET_SIM_ATOMIC(atomicAnd, int, old & val)
MINUNET_SIM_ATOMIC(atomicAnd, unsigned int, old & val)
MINUNET_SIM_ATOMIC(atomicOr, int, old | val)
MINUNET_SIM_ATOMIC(atomicOr, unsigned int, old | val)
MINUNET_SIM_ATOMIC(atomicXor, int, old ^ val)
MINUNET_SIM_ATOMIC(atomicXor, unsigned int, old ^ val)
MINUNET_SIM_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
MINUNET_SIM_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef MINUNET_SIM_ATOMIC
#define MINUNET_SIM_ATOMIC_CAS(T) \
    inline T atomicCAS(T* address, T compare, T val) { \
        __atomic_compare_exchange(address, &compare, &val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return compare; \
    }
MINUNET_SIM_ATOMIC_CAS(int)
MINUNET_SIM_ATOMIC_CAS(unsigned int)
MINUNET_SIM_ATOMIC_CAS(unsigned long long)
MINUNET_SIM_ATOMIC_CAS(unsigned short)
#undef MINUNET_SIM_ATOMIC_CAS

// ---- math: <math.h> has the float and double functions; these are CUDA's extras ---------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
// fmax/fmin return the other operand for a NaN, which would hide the poison of uninitialised shared memory:
// these return the poison instead (every other NaN behaves as on a GPU).
namespace minunet_sim {
inline bool poisoned(float x) { unsigned u; __builtin_memcpy(&u, &x, 4); return (u & 0x7fffffffu) == 0x7fffffffu; }
inline bool poisoned(double x) {  // the poison read as double, or a float poison converted to double
    unsigned long long u;
    __builtin_memcpy(&u, &x, 8);
    u &= 0x7fffffffffffffffull;
    return u == 0x7fffffff7fffffffull || u == 0x7fffffffe0000000ull;
}
}  // namespace minunet_sim
#define MINUNET_SIM_POISON_AWARE(T, name, libm) \
    inline T minunet_sim_##name(T a, T b) { return ::minunet_sim::poisoned(a) ? a : ::minunet_sim::poisoned(b) ? b : libm(a, b); }
MINUNET_SIM_POISON_AWARE(float, fmaxf, ::fmaxf)
MINUNET_SIM_POISON_AWARE(float, fminf, ::fminf)
MINUNET_SIM_POISON_AWARE(double, fmax, ::fmax)
MINUNET_SIM_POISON_AWARE(double, fmin, ::fmin)
inline float minunet_sim_fmax(float a, float b) { return minunet_sim_fmaxf(a, b); }  // fmax(float, float)
inline float minunet_sim_fmin(float a, float b) { return minunet_sim_fminf(a, b); }
#undef MINUNET_SIM_POISON_AWARE
#define fmaxf minunet_sim_fmaxf
#define fminf minunet_sim_fminf
#define fmax minunet_sim_fmax
#define fmin minunet_sim_fmin
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin((double)a, b); }
inline double max(float a, double b) { return fmax((double)a, b); }
inline double min(double a, float b) { return fmin(a, (double)b); }
inline double max(double a, float b) { return fmax(a, (double)b); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// ---- bit casts and bit tricks ---------------------------------------------------------------------------
inline unsigned int __float_as_uint(float x) { unsigned int u; __builtin_memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned int u) { float x; __builtin_memcpy(&x, &u, 4); return x; }
inline int __float_as_int(float x) { int u; __builtin_memcpy(&u, &x, 4); return u; }
inline float __int_as_float(int u) { float x; __builtin_memcpy(&x, &u, 4); return x; }
inline long long __double_as_longlong(double x) { long long u; __builtin_memcpy(&u, &x, 8); return u; }
inline double __longlong_as_double(long long u) { double x; __builtin_memcpy(&x, &u, 8); return x; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

// The initcheck mode reaches each __shared__ array through a pointer the compiler cannot trace back to the
// array (build.py's shared_through_pointers), so that it instruments every access to it.
namespace minunet_sim {
template <class T> inline T* launder(T* p) {
    asm("" : "+r"(p));
    return p;
}
}  // namespace minunet_sim

// __ldg: a read through the read-only cache on a GPU; a plain read here.
template <class T> inline T __ldg(const T* p) { return *p; }

// ---- what the generated wrapper uses (see minunet/sim/build.py) -------------------------------------------
// Storage of each `extern __shared__` array: the most any GPU lets a launch opt in to (sm_90: 227 KB).
// The runtime poisons the bytes past the launch's shared_mem (AddressSanitizer) or checks a canary there.
#define MINUNET_SIM_DYNAMIC_SHARED_CAPACITY (227 * 1024)

namespace minunet_sim {
template <unsigned... I> struct seq {};
template <unsigned N, unsigned... I> struct make_seq : make_seq<N - 1, N - 1, I...> {};
template <unsigned... I> struct make_seq<0, I...> { typedef seq<I...> type; };

// Call kernel f with args[i] pointing at the value of parameter i.
template <class... P, unsigned... I>
inline void invoke(void (*f)(P...), void** args, seq<I...>) { f(*static_cast<P*>(args[I])...); }
template <class... P>
inline void invoke(void (*f)(P...), void** args) { invoke(f, args, typename make_seq<sizeof...(P)>::type()); }

// The parameter types as the compiler sees them, for the Python side's argument checks:
// "f4" float, "f8" double, "i4" int, "u1" unsigned char, ...; "*" pointer, "*c" pointer to const.
template <class T> struct code { static const char* get() { return "?"; } };
#define MINUNET_SIM_CODE(T, s) template <> struct code<T> { static const char* get() { return s; } };
MINUNET_SIM_CODE(float, "f4") MINUNET_SIM_CODE(double, "f8")
MINUNET_SIM_CODE(char, "i1") MINUNET_SIM_CODE(signed char, "i1") MINUNET_SIM_CODE(unsigned char, "u1")
MINUNET_SIM_CODE(short, "i2") MINUNET_SIM_CODE(unsigned short, "u2")
MINUNET_SIM_CODE(int, "i4") MINUNET_SIM_CODE(unsigned int, "u4")
MINUNET_SIM_CODE(long, "i8") MINUNET_SIM_CODE(unsigned long, "u8")
MINUNET_SIM_CODE(long long, "i8") MINUNET_SIM_CODE(unsigned long long, "u8")
MINUNET_SIM_CODE(bool, "b1") MINUNET_SIM_CODE(void, "v")
#undef MINUNET_SIM_CODE
template <class T> struct param_code {
    static void put(char*& out) { for (const char* s = code<T>::get(); *s;) *out++ = *s++; }
};
template <class T> struct param_code<T*> {
    static void put(char*& out) { *out++ = '*'; param_code<T>::put(out); }
};
template <class T> struct param_code<const T*> {
    static void put(char*& out) { *out++ = '*'; *out++ = 'c'; param_code<T>::put(out); }
};
template <class T> struct param_code<volatile T*> : param_code<T*> {};
template <class T> struct param_code<const volatile T*> : param_code<const T*> {};

template <class... P>
inline const char* signature(void (*)(P...)) {
    static char text[16 * sizeof...(P) + 1];
    char* out = text;
    int dummy[] = {0, (param_code<P>::put(out), *out++ = ',', 0)...};
    (void)dummy;
    *(out > text ? out - 1 : out) = '\0';
    return text;
}
}  // namespace minunet_sim

#define MINUNET_SIM_EXPORT extern "C" __attribute__((visibility("default")))
// The storage of dynamic shared memory, and `extern __shared__ T name[];` as a name for it: as on a GPU, every
// extern __shared__ array starts at the same byte.
#define MINUNET_SIM_DYNAMIC_SHARED_STORAGE \
    __attribute__((aligned(16))) unsigned char minunet_sim_dynamic_shared[MINUNET_SIM_DYNAMIC_SHARED_CAPACITY];
#define MINUNET_SIM_DYNAMIC_SHARED(T, name) \
    extern T name[MINUNET_SIM_DYNAMIC_SHARED_CAPACITY / sizeof(T)] __attribute__((alias("minunet_sim_dynamic_shared")));
// __launch_bounds__(max_threads, ...) as the compiler evaluates it (its macros expanded); 1024 without one.
namespace minunet_sim {
constexpr int launch_bounds_max_threads(int max_threads = 1024, int = 0, int = 0) { return max_threads; }
}  // namespace minunet_sim
// Per kernel: an entry point the launcher calls in every fiber, the parameter types and the launch bounds.
#define MINUNET_SIM_KERNEL(name, launch_bounds) \
    MINUNET_SIM_EXPORT void minunet_sim_run_##name(void** args) { ::minunet_sim::invoke(name, args); } \
    MINUNET_SIM_EXPORT const char* minunet_sim_signature_##name() { return ::minunet_sim::signature(name); } \
    MINUNET_SIM_EXPORT int minunet_sim_max_threads_##name() { \
        return ::minunet_sim::launch_bounds_max_threads launch_bounds; \
    }

#ifdef MINUNET_SIM_COUNT
#include "counting.h"  // the memory-access counter of counting builds
#endif
