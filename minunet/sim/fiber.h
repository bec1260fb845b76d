// fiber.h: switching between fibers (one per simulated CUDA thread) on one OS thread.
//
// A fiber is a stack plus the callee-saved registers of the point where it stopped. Switching is a call to
// a dozen instructions of hand-written assembly that pushes those registers, swaps stack pointers and pops
// the other fiber's registers (about 10 ns; glibc's swapcontext also makes a signal-mask system call and
// costs about 10x more). x86-64 and aarch64 have the assembly; any other machine, and sanitizer builds
// (AddressSanitizer does not understand a hand-made stack switch), use glibc's ucontext.
//
//   context_start(ctx, stack_lo, stack_size, entry)  prepares ctx so that switching to it calls entry()
//   context_switch(from, to)                         saves the current fiber in from, resumes to
#pragma once
#include <stddef.h>
#include <stdint.h>

#if !defined(MINUNET_SIM_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define MINUNET_SIM_UCONTEXT 1
#endif

#ifdef MINUNET_SIM_UCONTEXT
#include <ucontext.h>

namespace minunet_sim {
struct Context { ucontext_t uc; };

inline void context_start(Context* c, char* stack_lo, size_t stack_size, void (*entry)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack_lo;
    c->uc.uc_stack.ss_size = stack_size;
    c->uc.uc_link = nullptr;  // entry never returns
    makecontext(&c->uc, entry, 0);
}
inline void context_switch(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
}  // namespace minunet_sim

#else
extern "C" __attribute__((visibility("hidden"))) void minunet_sim_switch(void** save_sp, void* new_sp);

#if defined(__x86_64__)
// System V AMD64: rbx, rbp, r12-r15 are callee-saved; the return address is already on the stack.
asm(R"(
    .text
    .globl minunet_sim_switch
    .hidden minunet_sim_switch
    .type minunet_sim_switch, @function
minunet_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size minunet_sim_switch, .-minunet_sim_switch
)");
namespace minunet_sim {
const int SAVED_WORDS = 6;  // pushed registers
// A new fiber's stack looks like one that stopped in minunet_sim_switch: six zero registers, then the
// "return address" entry, then a fake return address for entry itself. At entry rsp + 8 is 16-aligned.
inline void** initial_frame(void** top, void (*entry)()) {
    void** sp = top;
    *--sp = nullptr;
    *--sp = (void*)entry;
    for (int i = 0; i < SAVED_WORDS; i++) *--sp = nullptr;
    return sp;
}
}  // namespace minunet_sim

#elif defined(__aarch64__)
// AAPCS64: x19-x28, the frame pointer x29, the link register x30 and d8-d15 are callee-saved.
asm(R"(
    .text
    .globl minunet_sim_switch
    .hidden minunet_sim_switch
    .type minunet_sim_switch, %function
minunet_sim_switch:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .size minunet_sim_switch, .-minunet_sim_switch
)");
namespace minunet_sim {
// A new fiber's frame: all saved registers zero except x30 (the link register, slot 11) = entry, so
// the switch's `ret` jumps to entry with sp = top, 16-aligned.
inline void** initial_frame(void** top, void (*entry)()) {
    void** sp = top - 20;
    for (int i = 0; i < 20; i++) sp[i] = nullptr;
    sp[11] = (void*)entry;
    return sp;
}
}  // namespace minunet_sim
#endif

namespace minunet_sim {
struct Context { void* sp; };

inline void context_start(Context* c, char* stack_lo, size_t stack_size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)stack_lo + stack_size) & ~(uintptr_t)15;
    c->sp = initial_frame((void**)top, entry);
}
inline void context_switch(Context* from, Context* to) { minunet_sim_switch(&from->sp, to->sp); }
}  // namespace minunet_sim
#endif
