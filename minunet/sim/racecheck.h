// racecheck.h: the race checker's side of the scheduler (MINUNET_SIM_RACECHECK=1 builds, -DMINUNET_SIM_TSAN).
//
// The kernel is compiled with -fsanitize=thread, runtime.cpp without, and ThreadSanitizer watches the
// simulated CUDA threads: each is a TSan fiber, and switching fibers never counts as an ordering
// (`no_sync`), so TSan sees the threads of a block as concurrent although they take turns. The scheduler
// then states every ordering the CUDA model gives, as happens-before edges:
//   - a __syncthreads orders all threads of the block; a warp function orders the lanes that took part in it,
//     and nobody else (sync_group: every member releases one fresh sync object, then every member acquires it);
//   - a launch orders the host before every thread, and every thread before the host after the launch;
//   - atomics are GCC __atomic builtins (cuda_sim.h), which TSan knows: two atomics never race.
// What TSan cannot express is covered here:
//   - blocks run one after another, yet on a GPU they run at once: the blocks of a launch take turns over
//     BLOCK_SETS sets of fibers that are never ordered with each other, so a race between the blocks run
//     i-th and j-th is seen when i - j is not a multiple of BLOCK_SETS (consecutive blocks always). Blocks
//     on one set of fibers are ordered (the block end is a barrier of the set).
//   - every block has its own shared memory on a GPU, one array here: before each block TSan is told it is
//     new memory, so it forgets the previous block's accesses to it. The only call of TSan that does this
//     is in its interface for Java VMs (AnnotateNewMemory does nothing in TSan v3): the "Java heap" is
//     declared to be all of memory, and shared memory is freed and allocated in it.
// TSan writes its reports into a memory file during a launch; the scheduler stops at the first one and the
// Python side (races.py) turns it into a SimError naming the array, both threads and both lines.
#pragma once

#ifdef MINUNET_SIM_TSAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/tsan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern "C" void __tsan_java_init(unsigned long heap_begin, unsigned long heap_size);
extern "C" void __tsan_java_alloc(unsigned long ptr, unsigned long size);
extern "C" void __tsan_java_free(unsigned long ptr, unsigned long size);

namespace minunet_sim {
namespace race {

const unsigned BLOCK_SETS = 2;

// What every kernel library of the process shares: the fibers (TSan spends about 0.8 MB on each, so one set
// serves all libraries), the report file and the Java-heap switch. A static in an inline function with
// default visibility is one object in the whole process (STB_GNU_UNIQUE), across libraries loaded RTLD_LOCAL.
struct Process {
    void** fibers;      // BLOCK_SETS * per_set
    unsigned per_set;
    int report_fd;
    bool java_heap;
};
inline __attribute__((visibility("default"))) Process& process() {
    static Process state = {nullptr, 0, -1, false};
    return state;
}

void* g_host;                    // the OS thread's own fiber, where the scheduler runs
char g_launch_sync, g_end_sync;  // addresses TSan uses as sync objects
char g_report[16384];

#ifdef __aarch64__
const unsigned long USER_SPACE_END = 1ul << 48;
#else
const unsigned long USER_SPACE_END = 1ul << 47;
#endif

// TSan forgets every access to [lo, lo + size), rounded out to 8 bytes (its Java heap alignment; TSan keeps
// one record per 8 bytes, so a partly reset last word would still hold the previous block's accesses).
void forget_accesses(void* lo, size_t size) {
    Process& p = process();
    if (!p.java_heap) {
        __tsan_java_init(4096, USER_SPACE_END - 8192);
        p.java_heap = true;
    }
    unsigned long begin = (unsigned long)lo & ~7ul, end = ((unsigned long)lo + size + 7) & ~7ul;
    if (end <= begin) return;
    __tsan_java_free(begin, end - begin);
    __tsan_java_alloc(begin, end - begin);
}

void create_fibers(unsigned per_set) {
    Process& p = process();
    for (unsigned i = 0; i < BLOCK_SETS * p.per_set; i++) __tsan_destroy_fiber(p.fibers[i]);
    free(p.fibers);
    p.fibers = (void**)malloc(BLOCK_SETS * per_set * sizeof(void*));
    p.per_set = p.fibers ? per_set : 0;
    for (unsigned i = 0; i < BLOCK_SETS * p.per_set; i++) p.fibers[i] = __tsan_create_fiber(0);
}

const char* start_launch(unsigned threads) {
    Process& p = process();
    if (p.report_fd < 0 && (p.report_fd = memfd_create("minunet-racecheck", 0)) < 0)
        return "could not create the race checker's report file (memfd_create)";
    if (ftruncate(p.report_fd, 0) != 0 || lseek(p.report_fd, 0, SEEK_SET) != 0)
        return "could not clear the race checker's report file";
    if (threads > p.per_set) create_fibers(threads);  // more threads per block than ever before
    if (threads > p.per_set) return "out of memory for the race checker's fibers";
    g_host = __tsan_get_current_fiber();
    __tsan_release(&g_launch_sync);
    __sanitizer_set_report_fd((void*)(long)p.report_fd);
    return nullptr;
}

// The fiber of thread i of the block run `position`-th in the launch.
void* fiber_for(unsigned long long position, unsigned i) {
    return process().fibers[(position % BLOCK_SETS) * process().per_set + i];
}

inline void switch_to(void* fiber) { __tsan_switch_to_fiber(fiber, __tsan_switch_to_fiber_no_sync); }

// The threads of a new block: named for TSan's reports, ordered after the launch, and given fresh shared memory.
template <class FiberOf>
void start_block(unsigned n, FiberOf fiber_of, const uint3& block, void* shared, size_t shared_bytes) {
    char name[96];
    for (unsigned i = 0; i < n; i++) {
        const uint3 t = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
        snprintf(name, sizeof name, "minunet thread (%u,%u,%u) of block (%u,%u,%u)", t.x, t.y, t.z, block.x,
                 block.y, block.z);
        __tsan_set_fiber_name(fiber_of(i), name);
        switch_to(fiber_of(i));
        __tsan_acquire(&g_launch_sync);
    }
    switch_to(g_host);
    forget_accesses(shared, shared_bytes);
}

// Order the members (fiber_of(i) != nullptr for i < n) with each other: all that each did before is
// visible to all after. A fresh heap byte per group, so that no later group inherits this one's ordering.
template <class FiberOf>
void sync_group(unsigned n, FiberOf fiber_of) {
    char* sync = (char*)malloc(1);
    for (unsigned i = 0; i < n; i++)
        if (void* f = fiber_of(i)) { switch_to(f); __tsan_release(sync); }
    for (unsigned i = 0; i < n; i++)
        if (void* f = fiber_of(i)) { switch_to(f); __tsan_acquire(sync); }
    switch_to(g_host);
    free(sync);
}


bool reported() { return process().report_fd >= 0 && lseek(process().report_fd, 0, SEEK_END) > 0; }

// After the launch, finished or stopped: the host comes after everything the threads did; reports go back
// to stderr. After a crash TSan still thinks a fiber is in its signal handler: new fibers replace them all.
// (After other failures, the fibers' abandoned call stacks stay below their next ones; reports use the top.)
void end_launch(unsigned threads, unsigned long long blocks, bool crashed) {
    Process& p = process();
    for (unsigned long long set = 0; set < BLOCK_SETS && set < blocks; set++)  // the fibers this launch used
        for (unsigned i = 0; i < threads; i++) {
            switch_to(p.fibers[set * p.per_set + i]);
            __tsan_release(&g_end_sync);
        }
    switch_to(g_host);
    __tsan_acquire(&g_end_sync);
    __sanitizer_set_report_fd((void*)2L);
    if (crashed) create_fibers(p.per_set);
}

// The first report's text (the rest of a launch's reports are usually the same race again).
const char* report_text() {
    int fd = process().report_fd;
    ssize_t got = fd < 0 ? -1 : pread(fd, g_report, sizeof g_report - 1, 0);
    g_report[got > 0 ? got : 0] = '\0';
    return g_report;
}

}  // namespace race
}  // namespace minunet_sim
#define MINUNET_SIM_IF_TSAN(...) __VA_ARGS__
#else
#define MINUNET_SIM_IF_TSAN(...)
#endif
