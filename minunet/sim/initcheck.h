// initcheck.h: the initcheck mode (MINUNET_SIM_INITCHECK=1 builds, -DMINUNET_SIM_INITCHECK).
//
// The kernel is compiled with GCC's -fsanitize=kernel-address in its "calls" form (build.py): the compiler
// turns every load and store of kernel code into a call, __asan_load4_noabort(address) and so on, whatever
// instruction then uses the value (a compare, a select, fmax, an atomic, a shuffle, a vector load). These
// calls are ours (runtime.cpp), not AddressSanitizer's: they look the address up in two shadows, one byte per
// byte of memory,
//   - the block's shared memory: the kernel's __shared__ arrays and the launch's dynamic shared memory are
//     UNWRITTEN at the start of every block, a store makes its bytes DEFINED; the storage past the launch's
//     shared_mem bytes is OUTSIDE;
//   - the launch's global memory (global_memory.h's arena): the bytes of an output array still holding
//     SimLauncher.empty's fill are UNWRITTEN (the launcher says which), the other bytes of the arrays DEFINED,
//     the rest of their pages OUTSIDE;
// and a load of any byte that is not DEFINED, or a store to an OUTSIDE byte, is a finding: the launch stops,
// and the launcher names the array, element, thread and line. Memory elsewhere (the threads' stacks, the
// caller's data) is not tracked.
// GCC leaves out the accesses it can prove in bounds of a static variable (a __shared__ scalar, tile[0]):
// build.py rewrites each __shared__ declaration in this mode so that the kernel reaches the array through
// a pointer the compiler cannot see through (minunet_sim::launder).
#pragma once

#ifdef MINUNET_SIM_INITCHECK
#include <string.h>
#include <sys/mman.h>

namespace minunet_sim {
namespace init {

enum : unsigned char { DEFINED = 0, UNWRITTEN = 1, OUTSIDE = 2 };

// One shadow byte per byte of [lo, lo + bytes); the bytes of a fresh mapping are DEFINED (zero).
struct Shadow {
    char* lo = nullptr;
    size_t bytes = 0;
    unsigned char* bits = nullptr;
    size_t capacity = 0;

    bool cover(char* start, size_t n) {
        if (n + 16 > capacity) {  // 16 more: an access's shadow is read as one word, even at the end
            if (bits) munmap(bits, capacity);
            void* p = mmap(nullptr, n + 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
            bits = p == MAP_FAILED ? nullptr : (unsigned char*)p;
            capacity = bits ? n + 16 : 0;
            if (!bits) return false;
        } else {
            memset(bits, DEFINED, n);
        }
        lo = start;
        bytes = n;
        return true;
    }
    void clear() { lo = nullptr; bytes = 0; }
    // The shadow of p, or null if this shadow does not cover it.
    unsigned char* of(const char* p) const {
        return bits && (uintptr_t)(p - lo) < bytes ? bits + (p - lo) : nullptr;
    }
    void set(const char* p, size_t n, unsigned char state) {
        if (unsigned char* s = of(p)) memset(s, state, n < bytes - (p - lo) ? n : bytes - (p - lo));
    }
};

Shadow g_shared;  // the block's shared memory: the kernel's arrays and all of the dynamic storage
Shadow g_global;  // the launch's global memory: the arena of global_memory.h

// The state of the first byte of an n-byte access that is not DEFINED (a load) or that is OUTSIDE (a store,
// which then makes the others DEFINED), with its offset in *at; DEFINED if none.
inline unsigned char check(const Shadow& shadow, unsigned char* s, const char* p, size_t n, bool store, size_t* at) {
    size_t left = shadow.bytes - (size_t)(p - shadow.lo);
    if (n > left) n = left;
    for (size_t k = 0; k < n; k++) {
        if (s[k] == OUTSIDE || (!store && s[k] == UNWRITTEN)) {
            *at = k;
            return s[k];
        }
    }
    if (store) memset(s, DEFINED, n);
    return DEFINED;
}

}  // namespace init
}  // namespace minunet_sim
#endif
