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

// Fill [p, p + bytes) with the poison word, aligned to the address so every array sees the same bytes.
inline void poison(char* p, size_t bytes) {
    static const unsigned pattern[2] = {POISON_WORD, POISON_WORD};
    for (; bytes && ((uintptr_t)p & 3u); bytes--, p++) *p = ((const char*)pattern)[(uintptr_t)p & 3u];
    size_t words = bytes / 4;
    for (size_t i = 0; i < words; i++) memcpy(p + 4 * i, pattern, 4);
    memcpy(p + 4 * words, pattern, bytes % 4);
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
            const char* p = dynamic_at(i);
            for (size_t k = shared_mem; k < MINUNET_SIM_DYNAMIC_SHARED_CAPACITY; k++) {
                if (p[k] != ((const char*)&POISON_WORD)[(uintptr_t)(p + k) & 3u]) {
                    *which = i;
                    *offset = k;
                    return true;
                }
            }
#endif
        }
        return false;
    }
};

}  // namespace minunet_sim
