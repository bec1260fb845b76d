// shared_memory.h: the __shared__ memory of one launch, as the runtime poisons and guards it.
//
// build.py finds, per kernel, the shared arrays it can reach (static ones, and the storage of its
// `extern __shared__` arrays) and the launcher passes their offsets in this library. Per block, every one
// is filled with the poison word, so a read of memory nobody wrote shows up. An `extern __shared__`
// array has exactly the launch's shared_mem bytes: the rest of its storage is a canary checked after the
// launch, or, under AddressSanitizer, poisoned, so any access past shared_mem is reported at its line.
#pragma once
#include <dlfcn.h>
#include <string.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

namespace minunet_sim {

// A NaN as float and as double (0x7FFFFFFF7FFFFFFF), INT_MAX as int: a conspicuous value for every type.
const unsigned POISON_WORD = 0x7fffffffu;

// 4 KB of poison words, copied in chunks: the dynamic storage's tail is poisoned and checked every launch.
struct PoisonBlock {
    unsigned words[1024];
    PoisonBlock() { for (unsigned& w : words) w = POISON_WORD; }
};
const PoisonBlock POISON_BLOCK;

// Fill [p, p + bytes) with the poison word, aligned to the address so every array sees the same bytes.
inline void poison(char* p, size_t bytes) {
    const char* pattern = (const char*)POISON_BLOCK.words;
    for (; bytes && ((uintptr_t)p & 3u); bytes--, p++) *p = pattern[(uintptr_t)p & 3u];
    for (size_t n; bytes; bytes -= n, p += n) memcpy(p, pattern, n = bytes < 4096 ? bytes : 4096);
}

// Whether [p, p + bytes) still holds the poison; the first byte that does not, in *first.
inline bool still_poisoned(const char* p, size_t bytes, size_t* first) {
    const char* pattern = (const char*)POISON_BLOCK.words;
    for (size_t k = 0; k < bytes;) {
        size_t phase = (uintptr_t)(p + k) & 3u, n = bytes - k < 4096 - phase ? bytes - k : 4096 - phase;
        if (memcmp(p + k, pattern + phase, n) != 0) {
            while (p[k] == pattern[(uintptr_t)(p + k) & 3u]) k++;
            *first = k;
            return false;
        }
        k += n;
    }
    return true;
}

struct SharedMemory {
    char* base;                         // this library's load address
    const unsigned long long* arrays;   // static arrays: offset, size, offset, size, ...
    unsigned array_count;
    const unsigned long long* dynamic;  // offsets of the kernel's extern __shared__ storage
    const char* const* dynamic_names;
    unsigned dynamic_count;
    size_t shared_mem;                  // the launch's dynamic shared memory in bytes

    bool locate() {
        Dl_info self;
        if (!dladdr((void*)&poison, &self)) return false;
        base = (char*)self.dli_fbase;
        return true;
    }
    char* dynamic_at(unsigned i) const { return base + dynamic[i]; }
    size_t tail() const { return MINUNET_SIM_DYNAMIC_SHARED_CAPACITY - shared_mem; }

    // Each array of the block: static arrays, then the launch's shared_mem bytes of dynamic shared memory.
    template <class F> void each_array(F f) const {
        for (unsigned i = 0; i < array_count; i++) f(base + arrays[2 * i], (size_t)arrays[2 * i + 1]);
        for (unsigned i = 0; i < dynamic_count; i++) f(dynamic_at(i), shared_mem);
    }
    // The smallest range that holds every array of the kernel (the race checker forgets accesses there), and
    // all of the dynamic storage with whole_storage (the initcheck mode watches accesses past shared_mem).
    void span(char** lo, size_t* bytes, bool whole_storage = false) const {
        char *first = nullptr, *last = nullptr;
        each_array([&](char* p, size_t n) {
            if (whole_storage && dynamic_count && p == dynamic_at(0)) n = MINUNET_SIM_DYNAMIC_SHARED_CAPACITY;
            if (!first || p < first) first = p;
            if (!last || p + n > last) last = p + n;
        });
        *lo = first;
        *bytes = last - first;
    }
    // Before the first block: the bytes past shared_mem become the canary (or AddressSanitizer's poison).
    void guard_tails() const {
        for (unsigned i = 0; i < dynamic_count; i++) {
#ifdef __SANITIZE_ADDRESS__
            ASAN_POISON_MEMORY_REGION(dynamic_at(i) + shared_mem, tail());
#else
            poison(dynamic_at(i) + shared_mem, tail());
#endif
        }
    }
    // At the start of every block.
    void poison_block() const {
        for (unsigned i = 0; i < array_count; i++) poison(base + arrays[2 * i], arrays[2 * i + 1]);
        for (unsigned i = 0; i < dynamic_count; i++) poison(dynamic_at(i), shared_mem);
    }
    // After the launch: the first byte written past shared_mem, as (array index, byte offset), or false.
    bool tail_written(unsigned* which, size_t* offset) const {
        for (unsigned i = 0; i < dynamic_count; i++) {
#ifdef __SANITIZE_ADDRESS__
            ASAN_UNPOISON_MEMORY_REGION(dynamic_at(i) + shared_mem, tail());
#else
            if (!still_poisoned(dynamic_at(i) + shared_mem, tail(), offset)) {
                *which = i;
                *offset += shared_mem;
                return true;
            }
#endif
        }
        return false;
    }
};

}  // namespace minunet_sim
