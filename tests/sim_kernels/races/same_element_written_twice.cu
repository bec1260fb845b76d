// Two threads write one global element: out[t / 2] gets whichever thread writes last. In the simulator's
// thread order it is always the odd one, on a GPU either.
#include "common.cuh"

extern "C" __global__ void halve_by_overwriting(const real* x, real* out) {
    int t = threadIdx.x;
    out[t / 2] = x[t];  // the bug: threads 2k and 2k+1 both write out[k]
}
