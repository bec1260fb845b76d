// fiber_check.cpp: minunet/sim/fiber.h on its own, as a program, so that the context switch of a machine we
// do not run on can be checked under an emulator (tests/test_sim.py builds it for aarch64 and runs it with
// qemu-aarch64), and the x86-64 and ucontext versions natively.
//
// Four fibers take turns with main 100 times. Each keeps integer and floating-point values live across every
// switch (so the compiler holds them in callee-saved registers: x19-x28 and d8-d15 on aarch64, rbx, rbp and
// r12-r15 on x86-64) and checks that its stack is 16-byte aligned; at the end each result must equal the
// same arithmetic done without switching, bit for bit (build with -ffp-contract=off).
#include <stdio.h>

#include "fiber.h"

using minunet_sim::Context;

static const int FIBERS = 4, STEPS = 100;
static Context main_context, fiber_context[FIBERS];
static int running;
static double float_result[FIBERS];
static long int_result[FIBERS];
static bool misaligned;

// The same arithmetic for the fibers and the reference; `yield` switches back to main between steps.
template <class Yield>
static void work(int me, Yield yield, double* float_out, long* int_out) {
    double a = 1.0 + me, b = 0.5 * me, c = 3.0, d = -1.0 / (me + 1);
    long n = me, m = 1000 * me, k = 7;
    for (int step = 0; step < STEPS; step++) {
        a = a * 1.0001 + b;
        b = b * 0.999 + c * 1e-3;
        c = c + a * 1e-6 - d;
        d = d * 0.5 + 1.0;
        n += step * k;
        m ^= step * 31 + n;
        k = k * 3 + 1;
        yield();
    }
    *float_out = a + b + c + d;
    *int_out = n + m + k;
}

static void fiber_main() {
    int me = running;
    alignas(16) char probe[16];  // the compiler aligns it relative to a 16-aligned stack
    misaligned |= ((unsigned long)probe % 16) != 0;
    work(me, [me] { minunet_sim::context_switch(&fiber_context[me], &main_context); }, &float_result[me],
         &int_result[me]);
    minunet_sim::context_switch(&fiber_context[me], &main_context);  // finished: main never resumes it
}

int main() {
    static char stacks[FIBERS][64 * 1024];
    for (int i = 0; i < FIBERS; i++) {
        minunet_sim::context_start(&fiber_context[i], stacks[i], sizeof stacks[i], fiber_main);
    }
    for (int round = 0; round <= STEPS; round++) {
        for (int i = 0; i < FIBERS; i++) {
            running = i;
            minunet_sim::context_switch(&main_context, &fiber_context[i]);
        }
    }
    int failures = misaligned ? 1 : 0;
    if (misaligned) printf("a fiber's stack is not 16-byte aligned\n");
    for (int i = 0; i < FIBERS; i++) {
        double float_expected;
        long int_expected;
        work(i, [] {}, &float_expected, &int_expected);
        if (float_result[i] != float_expected || int_result[i] != int_expected) {
            printf("fiber %d: %.17g %ld, expected %.17g %ld\n", i, float_result[i], int_result[i], float_expected,
                   int_expected);
            failures++;
        }
    }
    if (failures == 0) printf("fibers ok\n");
    return failures != 0;
}
