// runtime.cpp: the scheduler of minunet's CUDA simulator, linked into every compiled kernel library.
//
// minunet_sim_launch runs a grid block after block on the calling OS thread. A block's threads are fibers
// (fiber.h), and the block runs warp by warp, as warps on a GPU run ahead of each other between barriers:
//   - the scheduler resumes every runnable lane of one warp in turn; each runs until it waits at
//     __syncthreads, waits at a warp function, or returns. Lanes of the warp that all reached the same warp
//     function get their values and run on; when none of the warp's lanes can, the next warp runs;
//   - when every live thread waits at the same __syncthreads, all become runnable (the barrier opens);
//   - anything else is a bug of the kernel (a thread returned while others wait, barriers at different
//     lines, a shuffle some lanes never reach) and the launch stops with a message naming threads and lines.
// A warp function thus orders its own warp only. In shuffled order the warps of each barrier phase, the
// lanes within a warp and the blocks run in a random order.
// A crash inside the kernel (SIGSEGV, SIGBUS, SIGFPE, SIGILL, a fiber stack overflow into its guard page)
// is caught on an alternate signal stack and jumps back here, so the Python process survives.
// The kernel's __shared__ arrays are poisoned at the start of every block and guarded (shared_memory.h); its
// global arrays are copies that end against inaccessible pages (global_memory.h).
#include "cuda_sim.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "fiber.h"
#include "float_mode.h"
#include "global_memory.h"
#include "initcheck.h"
#include "racecheck.h"
#include "shared_memory.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace minunet_sim {
namespace {

enum State { RUNNABLE, AT_BARRIER, AT_WARP, DONE };

struct Thread {
    Context ctx;
    uint3 idx;
    State state;
    int line;            // where it waits (barrier or warp function)
    const char* file;
    int op;              // warp function: WarpOp, its mask, lane argument, width and value
    unsigned mask;
    int arg, width, size;
    const void* value;
    void* result;
    void* race_fiber;    // its ThreadSanitizer fiber (race checker builds)
    uintptr_t trace;     // where it last compared two values (the diagnosis build)
};

const size_t STACK_BYTES = 64 * 1024;
#ifdef MINUNET_SIM_TSAN
const unsigned STACK_SETS = race::BLOCK_SETS;  // a stack per TSan fiber: a shared one would look like races
#else
const unsigned STACK_SETS = 1;
#endif
const char* const STATE_NAMES[] = {"is runnable", "waits at __syncthreads", "waits at a warp function", "has exited"};

// The launch in progress.
const char* g_kernel = "";
void (*g_body)(void**);
void** g_args;
Thread* g_threads;
unsigned g_count;            // threads per block
Thread* g_current;           // the running fiber, null in the scheduler
Context g_scheduler;
bool g_failed;
char g_error[4096];
uint64_t g_rng;
bool g_shuffle;
unsigned* g_order;           // resume order of a warp's lanes
unsigned g_warp_order[32];   // run order of a block's warps
char* g_shared_lo;           // this library's load address, for naming __shared__ arrays in race reports
GlobalMemory g_global;       // the launch's copies of its array arguments

// What the Python side needs to name a bad access to memory (it knows the arrays' names, types and shapes).
enum FindingKind { NO_FINDING, GLOBAL_FAULT, GLOBAL_CANARY, MISALIGNED, EARLY_EXIT, INITCHECK };
struct Finding {
    int kind;
    int access;            // 0 unknown, 1 read, 2 write
    unsigned region;       // global memory: the region (global_memory.h) ...
    long long offset;      // ... and the byte offset from its start
    char thread[160];      // who, as where() says it
    int shared;            // initcheck: 1 shared memory (address), 0 global memory (region, offset)
    int state;             // initcheck: UNWRITTEN or OUTSIDE (initcheck.h)
    unsigned long long address, size;
} g_finding;

// Fiber stacks: one mapping, each stack with an inaccessible guard region below it.
char* g_pool;
size_t g_pool_slots, g_slot_bytes, g_guard_bytes;

// Crash handling.
sigjmp_buf g_crash_jump;
volatile sig_atomic_t g_in_launch;
pthread_t g_launch_thread;
int g_fault_signal;
void* g_fault_address;
uintptr_t g_fault_pc;
int g_fault_access;  // 0 unknown, 1 read, 2 write
uintptr_t g_exit_trace;  // where a thread that exited while others wait last compared (diagnosis build)
const int FAULT_SIGNALS[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
struct sigaction g_saved_actions[4];
stack_t g_saved_altstack;
char* g_altstack;
const size_t ALTSTACK_BYTES = 64 * 1024;

const char* base_name(const char* path) {
    const char* slash = path ? strrchr(path, '/') : nullptr;
    return slash ? slash + 1 : (path ? path : "?");
}

// Append to the error message (which the Python side raises as SimError).
void report(const char* fmt, ...) {
    size_t used = strlen(g_error);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error + used, sizeof(g_error) - used, fmt, ap);
    va_end(ap);
    g_failed = true;
}

const char* where(const Thread* t) {
    static char text[2][160];
    static int which;
    char* out = text[which ^= 1];
    snprintf(out, 160, "thread (%u,%u,%u) of block (%u,%u,%u)", t->idx.x, t->idx.y, t->idx.z,
             blockIdx.x, blockIdx.y, blockIdx.z);
    return out;
}

uint64_t next_random() {  // splitmix64
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <class T> void shuffle_in_place(T* a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = next_random() % i;
        T tmp = a[i - 1]; a[i - 1] = a[j]; a[j] = tmp;
    }
}

// ---- fibers ---------------------------------------------------------------------------------------------
// Back to the scheduler; returns when the scheduler resumes this fiber.
void yield_to_scheduler() {
    MINUNET_SIM_IF_TSAN(race::switch_to(race::g_host));
    context_switch(&g_current->ctx, &g_scheduler);
}

void fiber_entry() {
    for (;;) {  // never returns: a finished fiber is restarted with context_start
        g_body(g_args);
        g_current->state = DONE;
        yield_to_scheduler();
    }
}

bool ensure_stacks(unsigned count) {
    size_t slots = (size_t)count * STACK_SETS;
    if (slots <= g_pool_slots) return true;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    g_guard_bytes = page > 16384 ? page : 16384;
    g_slot_bytes = g_guard_bytes + ((STACK_BYTES + 4096 + page - 1) / page) * page;  // 4 KB for the colouring
    if (g_pool) munmap(g_pool, g_pool_slots * g_slot_bytes);
    g_pool = nullptr;
    g_pool_slots = 0;
    void* p = mmap(nullptr, slots * g_slot_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    g_pool = (char*)p;
    for (size_t i = 0; i < slots; i++)
        if (mprotect(g_pool + i * g_slot_bytes, g_guard_bytes, PROT_NONE) != 0) return false;
    g_pool_slots = slots;
    free(g_threads);
    free(g_order);
    g_threads = (Thread*)calloc(count, sizeof(Thread));
    g_order = (unsigned*)calloc(count, sizeof(unsigned));
    return g_threads && g_order;
}

char* stack_lo(size_t i) { return g_pool + i * g_slot_bytes + g_guard_bytes; }

// Stacks start at different offsets modulo 4 KB: otherwise every fiber's hot stack top maps to the same
// cache sets (the slots are a multiple of the page size apart) and switching thrashes the L1 cache.
size_t stack_size(size_t i) { return g_slot_bytes - g_guard_bytes - (i % 64) * 64; }

void resume(Thread* t) {
    g_current = t;
    threadIdx = t->idx;
    MINUNET_SIM_IF_TSAN(race::switch_to(t->race_fiber));
    context_switch(&g_scheduler, &t->ctx);
    g_current = nullptr;
}

// ---- warps ----------------------------------------------------------------------------------------------
// The source lane of a shuffle, computed as the PTX shfl instruction does (c = the clamp/segment operand
// that CUDA's __shfl_*_sync pass for `width`); returns the caller's own lane when the source is out of range.
int source_lane(int op, int lane, int arg, int width) {
    int segmask = (32 - width) & 31;
    int clamp = op == SHFL_UP ? 0 : 31;
    int max_lane = (lane & segmask) | (clamp & ~segmask);
    int min_lane = lane & segmask;
    int b = arg & 31, j;
    bool ok;
    switch (op) {
        case SHFL_IDX: j = min_lane | (b & ~segmask); ok = j <= max_lane; break;
        case SHFL_UP: j = lane - b; ok = j >= max_lane; break;
        case SHFL_DOWN: j = lane + b; ok = j <= max_lane; break;
        default: j = lane ^ b; ok = j <= max_lane; break;
    }
    return ok ? j : lane;
}

bool same_call(const Thread* a, const Thread* b) {
    if (a->op != b->op) return false;
    if (a->op == SYNCWARP) return true;  // any __syncwarp meets any other
    return a->line == b->line && a->file == b->file;
}

// size bytes (a shuffled value: 1, 2, 4 or 8), copied inline: a memcpy call would show in the race checker.
void copy_value(void* to, const void* from, int size) {
    switch (size) {
        case 1: __builtin_memcpy(to, from, 1); break;
        case 2: __builtin_memcpy(to, from, 2); break;
        case 4: __builtin_memcpy(to, from, 4); break;
        default: __builtin_memcpy(to, from, 8); break;
    }
}

const char* op_name(int op);

// "3", "0-15" or "0-3, 8, 10-11": the lanes of a bit mask.
const char* lane_list(unsigned lanes) {
    static char text[2][160];
    static int which;
    char* out = text[which ^= 1];
    out[0] = '\0';
    for (unsigned a = 0; a < 32; a++) {
        if (!(lanes >> a & 1u)) continue;
        unsigned b = a;
        while (b + 1 < 32 && (lanes >> (b + 1) & 1u)) b++;
        size_t used = strlen(out);
        snprintf(out + used, 160 - used, b == a ? "%s%u" : "%s%u-%u", used ? ", " : "", a, b);
        a = b;
    }
    return out;
}

// A shuffle reads only from lanes that exist and take part in it (the PTX ISA: otherwise the value is
// undefined). Reports the group's readers of lanes that do not, and returns false, or returns true.
bool shuffle_sources_defined(unsigned first, unsigned lanes, unsigned members) {
    const char* const reasons[][2] = {{"does not exist", "do not exist"},
                                      {"is not in the mask", "are not in the mask"},
                                      {"has exited", "have exited"},
                                      {"is not at this call", "are not at this call"}};
    unsigned readers[4] = {0, 0, 0, 0}, sources[4] = {0, 0, 0, 0};
    const Thread* callers[4] = {nullptr, nullptr, nullptr, nullptr};
    for (unsigned b = 0; b < lanes; b++) {
        const Thread* tb = &g_threads[first + b];
        if (!(members >> b & 1u) || tb->op < SHFL_IDX || tb->op > SHFL_XOR) continue;
        int j = source_lane(tb->op, (int)b, tb->arg, tb->width);
        int reason = j >= (int)lanes ? 0
                     : !(tb->mask >> j & 1u) ? 1
                     : g_threads[first + j].state == DONE ? 2
                     : !(members >> j & 1u) ? 3 : -1;
        if (reason < 0) continue;
        readers[reason] |= 1u << b;
        sources[reason] |= 1u << j;
        if (!callers[reason]) callers[reason] = tb;
    }
    for (int reason = 0; reason < 4; reason++) {
        if (!readers[reason]) continue;
        const Thread* caller = callers[reason];
        bool one = !(readers[reason] & (readers[reason] - 1));
        bool one_source = !(sources[reason] & (sources[reason] - 1));
        report("kernel '%s': %s at %s:%d in warp %u of block (%u,%u,%u): %s %s %s %s %s, which %s", g_kernel,
               op_name(caller->op), base_name(caller->file), caller->line, first / 32, blockIdx.x, blockIdx.y,
               blockIdx.z, one ? "lane" : "lanes", lane_list(readers[reason]), one ? "reads" : "read",
               one_source ? "lane" : "lanes", lane_list(sources[reason]), reasons[reason][one_source ? 0 : 1]);
        if (reason == 0) report(" (the block's %u threads end at lane %u of this warp)", g_count, lanes - 1);
        if (reason == 1) report(" 0x%08x", caller->mask);
        report("; a shuffle may read only lanes that exist and take part (on a GPU the value is undefined): "
               "keep the source inside them, e.g. with the width argument or a smaller offset");
        return false;
    }
    return true;
}

// Complete every warp function of the warp starting at thread `first` whose lanes have all arrived: the
// non-exited lanes named in the masks (sm_70 and later: a mask may name lanes that do not exist or have
// exited). Returns false when a shuffle reads from a lane that does not take part (reported).
bool resolve_warp(unsigned first) {
    unsigned lanes = g_count - first < 32 ? g_count - first : 32;
    unsigned live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;  // lanes that exist and have not exited
    for (unsigned b = 0; b < lanes; b++)
        if (g_threads[first + b].state == DONE) live &= ~(1u << b);
    unsigned handled = 0;
    for (unsigned a = 0; a < lanes; a++) {
        Thread* ta = &g_threads[first + a];
        if (ta->state != AT_WARP || (handled >> a & 1u)) continue;
        unsigned members = 0, required = 0;
        for (unsigned b = 0; b < lanes; b++) {
            Thread* tb = &g_threads[first + b];
            if (tb->state == AT_WARP && same_call(ta, tb)) {
                members |= 1u << b;
                required |= tb->mask | (1u << b);
            }
        }
        handled |= members;
        required &= live;
        if ((required & members) != required) continue;  // someone named in a mask has not arrived
        if (!shuffle_sources_defined(first, lanes, members)) return false;
        MINUNET_SIM_IF_TSAN(race::sync_group(lanes, [&](unsigned b) {
            return (members >> b & 1u) ? g_threads[first + b].race_fiber : nullptr;
        }));
        unsigned votes = 0;  // lanes whose predicate is true, for __ballot_sync and friends
        for (unsigned b = 0; b < lanes; b++)
            if ((members >> b & 1u) && ta->op >= BALLOT && *(const int*)g_threads[first + b].value)
                votes |= 1u << b;
        for (unsigned b = 0; b < lanes; b++) {
            if (!(members >> b & 1u)) continue;
            Thread* tb = &g_threads[first + b];
            if (tb->op >= BALLOT) {
                unsigned own = votes & tb->mask;
                unsigned answer = tb->op == BALLOT ? own
                                  : tb->op == ANY ? own != 0u
                                                  : own == (tb->mask & members);
                copy_value(tb->result, &answer, 4);
            } else if (tb->op != SYNCWARP) {
                const Thread* src = &g_threads[first + source_lane(tb->op, (int)b, tb->arg, tb->width)];
                static const unsigned long long poison = ~0ull;  // a value of another size: undefined
                copy_value(tb->result, src->size == tb->size ? src->value : &poison, tb->size);
            }
            tb->state = RUNNABLE;
        }
    }
    return true;
}

const char* op_name(int op) {
    switch (op) {
        case SHFL_IDX: return "__shfl_sync";
        case SHFL_UP: return "__shfl_up_sync";
        case SHFL_DOWN: return "__shfl_down_sync";
        case SHFL_XOR: return "__shfl_xor_sync";
        case BALLOT: return "__ballot_sync";
        case ANY: return "__any_sync";
        case ALL: return "__all_sync";
        default: return "__syncwarp";
    }
}

void report_stuck_warp() {
    for (unsigned i = 0; i < g_count; i++) {
        const Thread* t = &g_threads[i];
        if (t->state != AT_WARP) continue;
        unsigned first = i & ~31u;
        for (unsigned b = 0; b < 32 && first + b < g_count; b++) {
            const Thread* other = &g_threads[first + b];
            if (!((t->mask | (1u << (i - first))) >> b & 1u)) continue;
            if ((other->state == AT_WARP && same_call(t, other)) || other->state == DONE) continue;
            report("kernel '%s': %s waits at %s (mask 0x%08x) at %s:%d, but lane %u, %s, %s",
                   g_kernel, where(t), op_name(t->op), t->mask, base_name(t->file), t->line, b, where(other),
                   STATE_NAMES[other->state]);
            if (other->state == AT_BARRIER || other->state == AT_WARP)
                report(" at %s:%d", base_name(other->file), other->line);
            report(" (every lane named in the mask that has not exited must reach the same warp function)");
            return;
        }
    }
    report("kernel '%s': warp functions can never complete in block (%u,%u,%u)", g_kernel,
           blockIdx.x, blockIdx.y, blockIdx.z);
}

// ---- barriers -------------------------------------------------------------------------------------------
// Called when no fiber can run and no warp can complete: either every live thread waits at one
// __syncthreads (open it) or the kernel has a bug (report it).
bool open_barrier() {
    const Thread* waiter = nullptr;
    const Thread* exited = nullptr;
    unsigned waiting = 0;
    for (unsigned i = 0; i < g_count; i++) {
        const Thread* t = &g_threads[i];
        if (t->state == AT_WARP) { report_stuck_warp(); return false; }
        if (t->state == AT_BARRIER) { waiting++; if (!waiter) waiter = t; }
        if (t->state == DONE && !exited) exited = t;
    }
    if (exited) {
        g_exit_trace = exited->trace;
        g_finding.kind = EARLY_EXIT;
        report("kernel '%s': %s exited while %u threads wait at __syncthreads at %s:%d "
               "(every thread of a block must reach every __syncthreads; an early return before a barrier "
               "is the usual cause)", g_kernel, where(exited), waiting, base_name(waiter->file), waiter->line);
        return false;
    }
    for (unsigned i = 0; i < g_count; i++) {
        const Thread* t = &g_threads[i];
        if (t->line != waiter->line || t->file != waiter->file) {
            unsigned here = 0;
            for (unsigned k = 0; k < g_count; k++)
                here += g_threads[k].line == waiter->line && g_threads[k].file == waiter->file;
            report("kernel '%s': threads of block (%u,%u,%u) wait at different __syncthreads: %u at %s:%d "
                   "(e.g. thread (%u,%u,%u)) and %u elsewhere, e.g. thread (%u,%u,%u) at %s:%d "
                   "(a barrier inside a branch that not all threads take)",
                   g_kernel, blockIdx.x, blockIdx.y, blockIdx.z, here, base_name(waiter->file), waiter->line,
                   waiter->idx.x, waiter->idx.y, waiter->idx.z, g_count - here, t->idx.x, t->idx.y, t->idx.z,
                   base_name(t->file), t->line);
            return false;
        }
    }
    for (unsigned i = 0; i < g_count; i++) g_threads[i].state = RUNNABLE;
    MINUNET_SIM_IF_TSAN(race::sync_group(g_count, [](unsigned i) { return g_threads[i].race_fiber; }));
    return true;
}

// ---- blocks ---------------------------------------------------------------------------------------------
bool race_reported() {
#ifdef MINUNET_SIM_TSAN
    if (race::reported())
        report("kernel '%s': ThreadSanitizer reported a data race in block (%u,%u,%u)", g_kernel, blockIdx.x,
               blockIdx.y, blockIdx.z);
#endif
    return g_failed;
}

// Run one warp until none of its lanes can move on (all wait at __syncthreads, have exited, or wait at a
// warp function that other lanes have not reached). Returns false when the launch must stop.
bool run_warp(unsigned first) {
    unsigned lanes = g_count - first < 32 ? g_count - first : 32;
    for (;;) {
        unsigned n = 0;
        for (unsigned i = first; i < first + lanes; i++)
            if (g_threads[i].state == RUNNABLE) g_order[n++] = i;
        if (n == 0) return true;
        if (g_shuffle) shuffle_in_place(g_order, n);
        for (unsigned k = 0; k < n; k++) {
            resume(&g_threads[g_order[k]]);
            if (g_failed) return false;
        }
        if (race_reported() || !resolve_warp(first)) return false;
    }
}

// Run the block run `position`-th in the launch.
void run_block(const SharedMemory& shared, unsigned long long position) {
    shared.poison_block();
#ifdef MINUNET_SIM_INITCHECK
    shared.each_array([](char* p, size_t n) { init::g_shared.set(p, n, init::UNWRITTEN); });
#endif
    unsigned stack_set = (unsigned)(position % STACK_SETS);
    for (unsigned i = 0; i < g_count; i++) {
        Thread* t = &g_threads[i];
        t->idx.x = i % blockDim.x;
        t->idx.y = (i / blockDim.x) % blockDim.y;
        t->idx.z = i / (blockDim.x * blockDim.y);
        t->state = RUNNABLE;
        t->line = 0;
        t->file = nullptr;
        t->trace = 0;
        size_t slot = (size_t)stack_set * g_count + i;
        context_start(&t->ctx, stack_lo(slot), stack_size(slot), fiber_entry);
        MINUNET_SIM_IF_TSAN(t->race_fiber = race::fiber_for(position, i));
    }
    MINUNET_SIM_IF_TSAN(auto fiber_of = [](unsigned i) { return g_threads[i].race_fiber; });
#ifdef MINUNET_SIM_TSAN
    char* shared_lo;
    size_t shared_bytes;
    shared.span(&shared_lo, &shared_bytes);
    race::start_block(g_count, fiber_of, blockIdx, shared_lo, shared_bytes);
#endif
    unsigned warps = (g_count + 31) / 32;
    for (;;) {
        for (unsigned w = 0; w < warps; w++) g_warp_order[w] = w;
        if (g_shuffle) shuffle_in_place(g_warp_order, warps);
        for (unsigned w = 0; w < warps; w++)
            if (!run_warp(32 * g_warp_order[w])) return;
        unsigned done = 0;
        for (unsigned i = 0; i < g_count; i++) done += g_threads[i].state == DONE;
        if (done == g_count) break;
        if (!open_barrier()) return;
    }
    // The next block on these fibers comes after this one (the blocks of other sets do not).
    MINUNET_SIM_IF_TSAN(race::sync_group(g_count, fiber_of));
}

// ---- crash handling ---------------------------------------------------------------------------------------
// Whether the faulting access was a read or a write, where the CPU says (x86-64's page-fault error code).
int fault_access(void* context) {
#if defined(__x86_64__)
    return (((const ucontext_t*)context)->uc_mcontext.gregs[REG_ERR] & 2) ? 2 : 1;
#else
    (void)context;
    return 0;
#endif
}

uintptr_t program_counter(void* context) {
    const ucontext_t* uc = (const ucontext_t*)context;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

// An address in this library's code as an offset from its load address (for addr2line), or 0 if elsewhere.
unsigned long long library_offset(uintptr_t pc) {
    Dl_info self, code;
    if (!pc || !dladdr((void*)&library_offset, &self) || !dladdr((void*)pc, &code) ||
        code.dli_fbase != self.dli_fbase)
        return 0;
    return pc - (uintptr_t)self.dli_fbase;
}

// The faulting instruction, or, when it is outside this library (in a sanitizer's runtime that kernel code
// called: the race checker's shadow of a wild address), the innermost caller inside it.
uintptr_t kernel_pc(uintptr_t pc) {
    if (library_offset(pc)) return pc;
    void* frames[64];
    int n = backtrace(frames, 64), k = 0;
    while (k < n && (uintptr_t)frames[k] != pc) k++;  // the handler's own frames, then the interrupted one
    for (k++; k < n; k++)
        if (library_offset((uintptr_t)frames[k])) return (uintptr_t)frames[k] - 1;  // in the call instruction
    return pc;
}

void on_fault(int sig, siginfo_t* info, void* context) {
    if (!g_in_launch || !pthread_equal(pthread_self(), g_launch_thread)) {
        // Not ours (another OS thread): put the previous handler back and let the fault happen again.
        for (int k = 0; k < 4; k++)
            if (FAULT_SIGNALS[k] == sig) sigaction(sig, &g_saved_actions[k], nullptr);
        return;
    }
    g_fault_signal = sig;
    g_fault_address = info->si_addr;
    g_fault_pc = kernel_pc(program_counter(context));
    g_fault_access = sig == SIGSEGV ? fault_access(context) : 0;
    MINUNET_SIM_IF_TSAN(race::switch_to(race::g_host));  // TSan finds the jump buffer in the fiber that set it
    siglongjmp(g_crash_jump, 1);
}

bool install_fault_handlers() {
    if (!g_altstack) {
        void* frame;
        backtrace(&frame, 1);  // loads the unwinder now, not inside the handler
        void* p = mmap(nullptr, ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return false;
        g_altstack = (char*)p;
    }
    stack_t ss;
    ss.ss_sp = g_altstack;
    ss.ss_size = ALTSTACK_BYTES;
    ss.ss_flags = 0;
    if (sigaltstack(&ss, &g_saved_altstack) != 0) return false;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int k = 0; k < 4; k++) sigaction(FAULT_SIGNALS[k], &sa, &g_saved_actions[k]);
    return true;
}

void remove_fault_handlers() {
    for (int k = 0; k < 4; k++) sigaction(FAULT_SIGNALS[k], &g_saved_actions[k], nullptr);
    sigaltstack(&g_saved_altstack, nullptr);
}

void report_crash() {
    const char* what = g_fault_signal == SIGSEGV ? "SIGSEGV (invalid memory access)"
                       : g_fault_signal == SIGBUS ? "SIGBUS (misaligned or invalid memory access)"
                       : g_fault_signal == SIGFPE ? "SIGFPE (integer division by zero?)"
                                                  : "SIGILL (illegal instruction)";
    char* address = (char*)g_fault_address;
    if (!g_current) {
        report("kernel '%s': %s at address %p in the simulator itself, block (%u,%u,%u)", g_kernel, what,
               g_fault_address, blockIdx.x, blockIdx.y, blockIdx.z);
        return;
    }
    unsigned region;
    long long offset;
    if ((g_fault_signal == SIGSEGV || g_fault_signal == SIGBUS) && g_global.locate(address, &region, &offset)) {
        g_finding = {GLOBAL_FAULT, g_fault_access, region, offset, "", 0, 0, 0, 0};
        snprintf(g_finding.thread, sizeof g_finding.thread, "%s", where(g_current));
        report("kernel '%s': %s accessed global memory outside its array arguments at address %p", g_kernel,
               where(g_current), g_fault_address);
        return;
    }
    report("kernel '%s' crashed in %s: %s", g_kernel, where(g_current), what);
    if (g_fault_signal == SIGSEGV || g_fault_signal == SIGBUS) report(" at address %p", g_fault_address);
    if (g_pool && address >= g_pool && address < g_pool + g_pool_slots * g_slot_bytes &&
        (size_t)(address - g_pool) % g_slot_bytes < g_guard_bytes)
        report(" -- a fiber stack overflow: the thread's local variables exceed the simulator's %zu KB stack",
               STACK_BYTES / 1024);
    else if (g_fault_signal == SIGSEGV || g_fault_signal == SIGBUS)
        report(" -- an out-of-bounds index into an array?");
}

}  // namespace

// ---- called from kernel code (cuda_sim.h) -------------------------------------------------------------------
void syncthreads(int line, const char* file) {
    Thread* t = g_current;
    t->state = AT_BARRIER;
    t->line = line;
    t->file = file;
    yield_to_scheduler();
}

void warp_op(int op, unsigned mask, const void* value, void* result, int size, int arg, int width, int line,
             const char* file) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        trap("warp function with a width that is not a power of two in [1, 32]", line, file);
    Thread* t = g_current;
    unsigned lane = (unsigned)(t - g_threads) % 32;
    if (!(mask >> lane & 1u)) {
        report("kernel '%s': %s at %s:%d in %s, lane %u of its warp, with mask 0x%08x, which leaves the calling "
               "lane out (undefined in the PTX ISA: every lane that calls a warp function must be in its mask)",
               g_kernel, op_name(op), base_name(file), line, where(t), lane, mask);
        yield_to_scheduler();  // the scheduler sees g_failed and never resumes this fiber
    }
    t->state = AT_WARP;
    t->op = op;
    t->mask = mask;
    t->value = value;
    t->result = result;
    t->size = size;
    t->arg = arg;
    t->width = width;
    t->line = line;
    t->file = file;
    yield_to_scheduler();
}

void trap(const char* what, int line, const char* file) {
    report("kernel '%s': %s at %s:%d in %s", g_kernel, what, base_name(file), line, where(g_current));
    yield_to_scheduler();  // the scheduler sees g_failed and never resumes this fiber
    abort();
}

}  // namespace minunet_sim

using namespace minunet_sim;

#ifdef MINUNET_SIM_TRACE
// -fsanitize-coverage=trace-cmp calls these before every comparison in kernel code: the thread's last one is
// kept, to name the line an early return decided on.
namespace {
inline void compared(uintptr_t pc) {
    if (g_current) g_current->trace = pc;
}
}  // namespace
#define MINUNET_SIM_TRACE_CMP(name, T) \
    extern "C" __attribute__((visibility("hidden"))) void name(T, T) { \
        compared((uintptr_t)__builtin_return_address(0)); \
    }
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmp1, uint8_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmp2, uint16_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmp4, uint32_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmp8, uint64_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_const_cmp1, uint8_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_const_cmp2, uint16_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_const_cmp4, uint32_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_const_cmp8, uint64_t)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmpf, float)
MINUNET_SIM_TRACE_CMP(__sanitizer_cov_trace_cmpd, double)
#undef MINUNET_SIM_TRACE_CMP
extern "C" __attribute__((visibility("hidden"))) void __sanitizer_cov_trace_switch(uint64_t, uint64_t*) {
    compared((uintptr_t)__builtin_return_address(0));
}
#endif

#ifdef MINUNET_SIM_INITCHECK
// The initcheck mode (initcheck.h): every load and store of kernel code calls one of these.
namespace {
void memory_access(uintptr_t address, size_t n, bool store, uintptr_t pc) {
    if (!g_current || g_failed) return;
    const char* p = (const char*)address;
    for (int shared = 1; shared >= 0; shared--) {
        const init::Shadow& shadow = shared ? init::g_shared : init::g_global;
        unsigned char* s = shadow.of(p);
        if (!s) continue;
        uint64_t word = 0;  // the common case: every byte DEFINED
        if (n <= 8) {
            memcpy(&word, s, 8);
            word &= n == 8 ? ~0ull : (1ull << (8 * n)) - 1;
            if (word == 0) return;
        }
        size_t at = 0;
        unsigned char state = init::check(shadow, s, p, n, store, &at);
        if (state == init::DEFINED) return;
        g_finding = {INITCHECK, store ? 2 : 1, 0, 0, "", shared, state, (unsigned long long)(address + at), n};
        snprintf(g_finding.thread, sizeof g_finding.thread, "%s", where(g_current));
        if (!shared) g_global.locate(p + at, &g_finding.region, &g_finding.offset);
        g_fault_pc = pc;
        report("kernel '%s': %s %s %s memory at %p, which is %s (initcheck)", g_kernel, where(g_current),
               store ? "writes" : "reads", shared ? "shared" : "global", (void*)(p + at),
               state == init::UNWRITTEN ? "unwritten" : "outside every array");
        yield_to_scheduler();  // the scheduler sees g_failed and never resumes this fiber
        return;
    }
}
}  // namespace

#define MINUNET_SIM_ACCESS(n) \
    extern "C" __attribute__((visibility("hidden"))) void __asan_load##n##_noabort(uintptr_t p) { \
        memory_access(p, n, false, (uintptr_t)__builtin_return_address(0)); \
    } \
    extern "C" __attribute__((visibility("hidden"))) void __asan_store##n##_noabort(uintptr_t p) { \
        memory_access(p, n, true, (uintptr_t)__builtin_return_address(0)); \
    }
MINUNET_SIM_ACCESS(1)
MINUNET_SIM_ACCESS(2)
MINUNET_SIM_ACCESS(4)
MINUNET_SIM_ACCESS(8)
MINUNET_SIM_ACCESS(16)
#undef MINUNET_SIM_ACCESS
extern "C" __attribute__((visibility("hidden"))) void __asan_loadN_noabort(uintptr_t p, size_t n) {
    memory_access(p, n, false, (uintptr_t)__builtin_return_address(0));
}
extern "C" __attribute__((visibility("hidden"))) void __asan_storeN_noabort(uintptr_t p, size_t n) {
    memory_access(p, n, true, (uintptr_t)__builtin_return_address(0));
}
#endif

#ifdef MINUNET_SIM_ALIGNMENT
// -fsanitize=alignment (build.py) calls this for an access through a misaligned pointer: the structures are
// UBSan's (GCC and LLVM share them), the handler is ours, so the launch stops with a SimError.
struct UbsanLocation { const char* file; unsigned line, column; };
struct UbsanType { unsigned short kind, info; char name[1]; };
struct UbsanTypeMismatch { UbsanLocation location; const UbsanType* type; unsigned char log_alignment, check; };

extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1(UbsanTypeMismatch* data,
                                                                                     uintptr_t pointer) {
    if (!g_current || g_failed) return;
    report("kernel '%s': %s %s the misaligned address %p at %s:%u: a %s needs %u-byte alignment (a GPU stops the "
           "kernel: misaligned address)", g_kernel, where(g_current),
           data->check == 0 ? "loads from" : data->check == 1 ? "stores to" : "accesses", (void*)pointer,
           base_name(data->location.file), data->location.line, data->type->name, 1u << data->log_alignment);
    unsigned region;
    long long offset;
    if (g_global.locate((const char*)pointer, &region, &offset))
        g_finding = {MISALIGNED, 0, region, offset, "", 0, 0, 0, 0};
    yield_to_scheduler();  // the scheduler sees g_failed and never resumes this fiber
}
extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1_abort(
    UbsanTypeMismatch* data, uintptr_t pointer) {
    __ubsan_handle_type_mismatch_v1(data, pointer);
}
#endif

extern "C" __attribute__((visibility("default"))) const char* minunet_sim_last_error() { return g_error; }

// The race checker's report of the last launch ("" without one), and the address a __shared__ array's
// symbol value is relative to: this library's load address (shared_memory.h).
extern "C" __attribute__((visibility("default"))) const char* minunet_sim_race_report() {
#ifdef MINUNET_SIM_TSAN
    return race::report_text();
#else
    return "";
#endif
}
extern "C" __attribute__((visibility("default"))) unsigned long long minunet_sim_shared_base() {
    return (unsigned long long)(uintptr_t)g_shared_lo;
}

// Where the last crash happened, as an offset into this library, or 0 if elsewhere.
extern "C" __attribute__((visibility("default"))) unsigned long long minunet_sim_fault_offset() {
    return library_offset(g_fault_pc);
}

// The diagnosis build: where a thread that exited while others waited at a barrier last compared two values,
// as an offset into this library.
extern "C" __attribute__((visibility("default"))) unsigned long long minunet_sim_exit_trace() {
    return library_offset(g_exit_trace);
}

// Before a launch: copy the array arguments' regions into guarded memory (global_memory.h), against the guard
// page after each (or before: at_start); device[i] is where region i is for the kernel. Returns 0, or 1 if
// memory ran out.
extern "C" __attribute__((visibility("default"))) int minunet_sim_global_place(
    unsigned count, char* const* host, const unsigned long long* bytes, const int* writable, int at_start,
    const unsigned char* const* unwritten, unsigned long long* device) {
    if (!g_global.place(count, host, bytes, writable, at_start != 0)) return 1;
#ifdef MINUNET_SIM_INITCHECK  // the arrays' bytes defined, or unwritten where the launcher says; the rest outside
    if (!init::g_global.cover(g_global.arena, g_global.arena_bytes)) return 1;
    for (unsigned i = 0; i < count; i++) {
        const GlobalRegion& r = g_global.regions[i];
        init::g_global.set(r.slot, r.slot_bytes, init::OUTSIDE);
        init::g_global.set(r.device, r.bytes, init::DEFINED);
        if (unwritten && unwritten[i])
            for (size_t k = 0; k < r.bytes; k++)
                if (unwritten[i][k]) *init::g_global.of(r.device + k) = init::UNWRITTEN;
    }
#else
    (void)unwritten;
#endif
    // ThreadSanitizer: new memory, and a block it knows (racecheck.h), so that a report can name its place.
    MINUNET_SIM_IF_TSAN(race::forget_accesses(g_global.arena, g_global.arena_bytes));
    for (unsigned i = 0; i < count; i++) device[i] = (unsigned long long)(uintptr_t)g_global.regions[i].device;
    return 0;
}

// After a launch (finished or failed): copy the writable regions back; 1 if the kernel wrote outside them
// (the region and offset in the finding), after a launch that did not fail otherwise.
extern "C" __attribute__((visibility("default"))) int minunet_sim_global_finish(int failed) {
    g_global.copy_back();
    if (failed) return 0;
    unsigned region;
    long long offset;
    if (!g_global.canary_written(&region, &offset)) return 0;
    g_finding = {GLOBAL_CANARY, 2, region, offset, "", 0, 0, 0, 0};
    snprintf(g_error, sizeof g_error, "kernel '%s' wrote global memory outside its array arguments", g_kernel);
    return 1;
}

// The last finding about memory (Finding above), for the Python side to name the array and element.
extern "C" __attribute__((visibility("default"))) const void* minunet_sim_finding() { return &g_finding; }

// Run body (a kernel's entry point) over the grid. Returns 0, or 1 with the message in minunet_sim_last_error.
extern "C" __attribute__((visibility("default"))) int minunet_sim_launch(
    const char* kernel, void (*body)(void**), void** args, const unsigned* grid, const unsigned* block,
    int shuffle, unsigned long long seed, const unsigned long long* shared_arrays, unsigned shared_array_count,
    const unsigned long long* dynamic_shared, const char* const* dynamic_names, unsigned dynamic_count,
    unsigned long long shared_mem) {
    g_error[0] = '\0';
    g_failed = false;
    g_fault_pc = 0;
    g_exit_trace = 0;
    g_finding.kind = NO_FINDING;
    g_kernel = kernel;
    g_body = body;
    g_args = args;
    g_shuffle = shuffle != 0;
    g_rng = seed;
    g_current = nullptr;
    unsigned long long count = (unsigned long long)block[0] * block[1] * block[2];
    unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    if (count == 0 || count > 1024 || blocks == 0) {
        report("kernel '%s': bad launch configuration grid (%u,%u,%u) block (%u,%u,%u)", kernel,
               grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return 1;
    }
    if (!ensure_stacks((unsigned)count)) {
        report("kernel '%s': could not allocate fiber stacks for %llu threads", kernel, count);
        return 1;
    }
    g_count = (unsigned)count;
    SharedMemory shared = {nullptr, shared_arrays, shared_array_count, dynamic_shared, dynamic_names,
                           dynamic_count, (size_t)shared_mem};
    if (shared.shared_mem > MINUNET_SIM_DYNAMIC_SHARED_CAPACITY || !shared.locate()) {
        report("kernel '%s': bad shared memory layout (shared_mem %llu)", kernel, shared_mem);
        return 1;
    }
    g_shared_lo = shared.base;
    blockDim = dim3(block[0], block[1], block[2]);
    gridDim = dim3(grid[0], grid[1], grid[2]);

    unsigned long long* order = nullptr;
    if (g_shuffle) {
        if (blocks > (1ull << 26)) {
            report("kernel '%s': %llu blocks are too many to run in shuffled order", kernel, blocks);
            return 1;
        }
        order = (unsigned long long*)malloc(blocks * sizeof *order);
        if (!order) { report("kernel '%s': out of memory", kernel); return 1; }
        for (unsigned long long b = 0; b < blocks; b++) order[b] = b;
        shuffle_in_place(order, blocks);
    }

    if (!install_fault_handlers()) {
        free(order);
        report("kernel '%s': could not install the crash handlers", kernel);
        return 1;
    }
    shared.guard_tails();
#ifdef MINUNET_SIM_INITCHECK
    char* shared_lo;
    size_t shared_bytes;
    shared.span(&shared_lo, &shared_bytes, true);
    if (!init::g_shared.cover(shared_lo, shared_bytes)) {
        free(order);
        remove_fault_handlers();
        report("kernel '%s': out of memory for the initcheck shadow", kernel);
        return 1;
    }
    for (unsigned i = 0; i < shared.dynamic_count; i++)
        init::g_shared.set(shared.dynamic_at(i) + shared.shared_mem, shared.tail(), init::OUTSIDE);
#endif
    FlushToZero gpu_float_mode;  // GPU arithmetic mode only (float_mode.h)
#ifdef MINUNET_SIM_TSAN
    if (const char* problem = race::start_launch(g_count)) {
        free(order);
        remove_fault_handlers();
        report("kernel '%s': %s", kernel, problem);
        return 1;
    }
#endif
    g_launch_thread = pthread_self();
    g_in_launch = 1;
    [[maybe_unused]] bool crashed = false;
    if (sigsetjmp(g_crash_jump, 1) == 0) {
        for (unsigned long long b = 0; b < blocks && !g_failed; b++) {
            unsigned long long id = order ? order[b] : b;
            blockIdx.x = (unsigned)(id % grid[0]);
            blockIdx.y = (unsigned)((id / grid[0]) % grid[1]);
            blockIdx.z = (unsigned)(id / ((unsigned long long)grid[0] * grid[1]));
            run_block(shared, b);
        }
    } else {
        crashed = true;
        report_crash();
    }
    g_in_launch = 0;
    g_current = nullptr;
    MINUNET_SIM_IF_TSAN(race::end_launch(g_count, blocks, crashed));
    remove_fault_handlers();
    free(order);
    unsigned which;
    size_t offset;
    if (shared.tail_written(&which, &offset) && !g_failed)
        report("kernel '%s' wrote past the %llu bytes of dynamic shared memory its launch asked for: "
               "extern __shared__ %s, byte %zu (on a GPU: another block's memory, or a fault)",
               kernel, shared_mem, dynamic_names[which], offset);
    fflush(stdout);  // the kernel's printf output before Python prints anything else
    return g_failed ? 1 : 0;
}

// Give the fiber stacks back between launches. Each library keeps its own pool (two memory mappings per
// stack: the stack and its guard page), so a process that loads many libraries, as the exercises' tests do
// with one per mutant, would otherwise run out of mappings (vm.max_map_count); the next launch allocates
// them again.
extern "C" __attribute__((visibility("default"))) void minunet_sim_release_stacks() {
#ifndef MINUNET_SIM_TSAN  // the race checker's fibers keep their stacks for the process
    if (g_in_launch || !g_pool) return;
    munmap(g_pool, g_pool_slots * g_slot_bytes);
    g_pool = nullptr;
    g_pool_slots = 0;
#endif
}
