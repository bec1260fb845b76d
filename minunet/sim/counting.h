// counting.h: the simulator's memory-access counter, in libraries built with SimModule(counting=True)
// (python -m minunet.exercises shows the counts; included by cuda_sim.h in those builds only).
//
// GCC's kernel-address instrumentation, with calls (build.py: COUNT_FLAGS), turns every load and store of
// kernel code into a call of __asan_load<N>_noabort / __asan_store<N>_noabort before the access. Here each is
// counted for the CUDA thread that made it, by the memory it touches: one of the ranges the launcher set
// before the launch (the argument arrays: global memory; the kernel's __shared__ arrays: shared memory).
// Anything else, a thread's local variables or threadIdx, is not counted. These functions are not
// instrumented themselves.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace minunet_sim_count {
struct Range {
    unsigned long long lo, hi, kind;  // [lo, hi); kind 0: global memory, 1: shared memory
};
// Not in .bss, where shared_layout.py takes every object a kernel reaches for a __shared__ array (and the
// runtime poisons it at the start of every block).
#define MINUNET_SIM_COUNT_DATA __attribute__((section(".data.minunet_sim_count")))
inline MINUNET_SIM_COUNT_DATA const Range* g_ranges = nullptr;
inline MINUNET_SIM_COUNT_DATA unsigned long long g_range_count = 0;
inline MINUNET_SIM_COUNT_DATA unsigned long long* g_counts = nullptr;  // 4 per thread: global ld, st, shared ld, st

__attribute__((no_sanitize_address)) inline void count(uintptr_t address, unsigned long long store) {
    for (unsigned long long i = 0; i < g_range_count; i++) {
        const Range& r = g_ranges[i];
        if (address - r.lo < r.hi - r.lo) {
            unsigned long long block = ((unsigned long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
            unsigned long long thread = block * blockDim.x * blockDim.y * blockDim.z +
                                        (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
            g_counts[4 * thread + 2 * r.kind + store]++;
            return;
        }
    }
}
}  // namespace minunet_sim_count

// Before a launch: the ranges to count in, and the counters (zeroed by the caller); no ranges: nothing counted.
extern "C" __attribute__((visibility("default"), no_sanitize_address)) void minunet_sim_count_set(
        const minunet_sim_count::Range* ranges, unsigned long long range_count, unsigned long long* counts) {
    minunet_sim_count::g_ranges = ranges;
    minunet_sim_count::g_range_count = range_count;
    minunet_sim_count::g_counts = counts;
}

#define MINUNET_SIM_COUNTED(size)                                                                              \
    extern "C" __attribute__((no_sanitize_address)) void __asan_load##size##_noabort(uintptr_t address) {    \
        minunet_sim_count::count(address, 0);                                                                \
    }                                                                                                        \
    extern "C" __attribute__((no_sanitize_address)) void __asan_store##size##_noabort(uintptr_t address) {   \
        minunet_sim_count::count(address, 1);                                                                \
    }
MINUNET_SIM_COUNTED(1)
MINUNET_SIM_COUNTED(2)
MINUNET_SIM_COUNTED(4)
MINUNET_SIM_COUNTED(8)
MINUNET_SIM_COUNTED(16)
#undef MINUNET_SIM_COUNTED
extern "C" __attribute__((no_sanitize_address)) void __asan_loadN_noabort(uintptr_t address, size_t) {
    minunet_sim_count::count(address, 0);
}
extern "C" __attribute__((no_sanitize_address)) void __asan_storeN_noabort(uintptr_t address, size_t) {
    minunet_sim_count::count(address, 1);
}
extern "C" __attribute__((no_sanitize_address)) void __asan_handle_no_return() {}
