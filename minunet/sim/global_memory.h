// global_memory.h: the kernel's global memory, as the runtime guards it.
//
// The kernel never sees the caller's arrays: each launch copies every array argument (the launcher merges
// arguments that overlap into one region) into an arena of its own pages, and copies the writable ones back
// afterwards. In the arena the regions lie between inaccessible guard pages, and alternate launches of a
// kernel put them against the guard at one end or the other: against the guard after them, so the first
// access past the end faults, or against the guard before them, so the first access before the start does
// (the fault handler names the array, the element and the line). Either way a region's start keeps the caller's
// alignment modulo 16 bytes (a GPU's allocations are at least that aligned, and a float4 or double2 needs it),
// so up to 15 bytes of slack may lie between the array and the guard it is placed against. The other bytes of
// its pages hold a canary, checked after the launch: a write there is an error naming the array and element (an
// access further away hits a guard page). Reads of them are named only by the initcheck mode, which checks every
// access, or by AddressSanitizer, which is told that they and the guard pages are poisoned; in the other modes
// the canary makes such a read show: laid out word by word from the array's start, it reads as NaN in a float
// or double element beside the array (and as 2147460517 in an int), not as a number that could pass.
#pragma once
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

namespace minunet_sim {

const size_t GUARD_BYTES = 64 * 1024;      // between regions: an index up to 64 KB off still faults
// The canary word 0x7FFFA5A5: a float NaN, and two of them a double NaN (0x7FFFA5A57FFFA5A5).
const unsigned char CANARY[4] = {0xA5, 0xA5, 0xFF, 0x7F};

// The canary byte at p, for an array that starts at device: words aligned with the array's elements.
inline unsigned char canary_at(const char* p, const char* device) {
    return CANARY[((uintptr_t)p - (uintptr_t)device) & 3u];
}

inline void fill_canary(char* from, char* to, const char* device) {
    for (char* p = from; p < to; p++) *p = (char)canary_at(p, device);
}

struct GlobalRegion {
    char* host;        // the caller's bytes
    size_t bytes;
    bool writable;     // copied back after the launch
    char* device;      // the kernel's copy
    char* slot;        // its accessible pages: [slot, device) front bytes, then the array, then slack
    size_t slot_bytes;
};

struct GlobalMemory {
    char* arena = nullptr;
    size_t arena_bytes = 0;
    GlobalRegion* regions = nullptr;
    unsigned count = 0;

    static size_t page() { return (size_t)sysconf(_SC_PAGESIZE); }
    static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

    // Copy the regions into guarded pages, each against the guard after it (or before it: at_start); false if
    // memory ran out.
    bool place(unsigned n, char* const* host, const unsigned long long* bytes, const int* writable, bool at_start) {
        size_t total = GUARD_BYTES;
        for (unsigned i = 0; i < n; i++) total += round_up(bytes[i] + 15, page()) + GUARD_BYTES;
        unpoison();
        if (total > arena_bytes) {
            if (arena) munmap(arena, arena_bytes);
            arena_bytes = 0;
            void* p = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) return false;
            arena = (char*)p;
            arena_bytes = total;
        } else if (mprotect(arena, arena_bytes, PROT_NONE) != 0) {
            return false;
        }
        GlobalRegion* grown = (GlobalRegion*)realloc(regions, (n ? n : 1) * sizeof(GlobalRegion));
        if (!grown) return false;
        regions = grown;
        count = n;
        char* at = arena + GUARD_BYTES;
        for (unsigned i = 0; i < n; i++) {
            GlobalRegion& r = regions[i];
            r.host = host[i];
            r.bytes = bytes[i];
            r.writable = writable[i] != 0;
            r.slot = at;
            r.slot_bytes = round_up(r.bytes + 15, page());
            // The earliest or the latest start that keeps the caller's alignment modulo 16.
            uintptr_t start = (uintptr_t)r.slot + ((uintptr_t)r.host & 15u);
            if (!at_start) {
                start = (uintptr_t)(r.slot + r.slot_bytes) - r.bytes;
                start -= (start - (uintptr_t)r.host) & 15u;
            }
            r.device = (char*)start;
            if (r.slot_bytes && mprotect(r.slot, r.slot_bytes, PROT_READ | PROT_WRITE) != 0) return false;
            fill_canary(r.slot, r.device, r.device);
            memcpy(r.device, r.host, r.bytes);
            fill_canary(r.device + r.bytes, r.slot + r.slot_bytes, r.device);
#ifdef __SANITIZE_ADDRESS__  // AddressSanitizer reports any access outside the arrays, at its line
            ASAN_POISON_MEMORY_REGION(at - GUARD_BYTES, r.device - (at - GUARD_BYTES));
            ASAN_POISON_MEMORY_REGION(r.device + r.bytes, r.slot + r.slot_bytes + GUARD_BYTES - (r.device + r.bytes));
#endif
            at += r.slot_bytes + GUARD_BYTES;
        }
        return true;
    }

    void unpoison() {
#ifdef __SANITIZE_ADDRESS__
        if (arena) ASAN_UNPOISON_MEMORY_REGION(arena, arena_bytes);
#endif
    }

    // After the launch: the first canary byte a kernel overwrote, as (region, offset from its start: negative
    // before it, >= bytes past its end), the one nearest the array's start or end. (AddressSanitizer has
    // reported any access there already.)
    bool canary_written(unsigned* which, long long* offset) const {
#ifdef __SANITIZE_ADDRESS__
        return false;
#endif
        for (unsigned i = 0; i < count; i++) {
            const GlobalRegion& r = regions[i];
            for (char* p = r.device - 1; p >= r.slot; p--)
                if ((unsigned char)*p != canary_at(p, r.device)) { *which = i; *offset = p - r.device; return true; }
            for (char* p = r.device + r.bytes; p < r.slot + r.slot_bytes; p++)
                if ((unsigned char)*p != canary_at(p, r.device)) { *which = i; *offset = p - r.device; return true; }
        }
        return false;
    }

    // The region an address in the arena belongs to, or is nearest to, and its offset from the region's start;
    // false if the address is not in the arena.
    bool locate(const char* address, unsigned* which, long long* offset) const {
        if (!arena || address < arena || address >= arena + arena_bytes || count == 0) return false;
        long long best = 0;
        for (unsigned i = 0; i < count; i++) {
            const GlobalRegion& r = regions[i];
            long long off = address - r.device, bytes = (long long)r.bytes;
            long long distance = off < 0 ? -off : off >= bytes ? off - bytes + 1 : 0;
            if (i == 0 || distance < best) { best = distance; *which = i; *offset = off; }
        }
        return true;
    }

    void copy_back() {
        for (unsigned i = 0; i < count; i++) {
            GlobalRegion& r = regions[i];
            if (r.writable) memcpy(r.host, r.device, r.bytes);
        }
    }
};

}  // namespace minunet_sim
