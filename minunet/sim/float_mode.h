// float_mode.h: GPU arithmetic (MINUNET_SIM_GPU_MATH=1). CuPy compiles kernels with -ftz=true: float results
// and inputs below 2^-126 are flushed to zero. The CPU does the same with its flush-to-zero and
// denormals-are-zero bits, set for the launch; they apply to double too (the GPU keeps double denormals).
// Fused multiply-adds come from the compiler flags (build.py), not from here.
#pragma once

namespace minunet_sim {

struct FlushToZero {
#ifdef MINUNET_SIM_GPU_MATH
#if defined(__x86_64__)
    unsigned saved;
    FlushToZero() {
        __asm__ volatile("stmxcsr %0" : "=m"(saved));
        unsigned flushing = saved | 0x8040u;  // FTZ (bit 15) and DAZ (bit 6)
        __asm__ volatile("ldmxcsr %0" : : "m"(flushing));
    }
    ~FlushToZero() { __asm__ volatile("ldmxcsr %0" : : "m"(saved)); }
#elif defined(__aarch64__)
    unsigned long saved;
    FlushToZero() {
        __asm__ volatile("mrs %0, fpcr" : "=r"(saved));
        __asm__ volatile("msr fpcr, %0" : : "r"(saved | (1ul << 24)));  // FZ
    }
    ~FlushToZero() { __asm__ volatile("msr fpcr, %0" : : "r"(saved)); }
#else
#error "MINUNET_SIM_GPU_MATH: flush-to-zero is implemented for x86-64 and aarch64 only"
#endif
#endif
};

}  // namespace minunet_sim
