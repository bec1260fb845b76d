// A forward difference through dynamic shared memory: staged[] holds the block's elements and the next one
// (a halo), so a launch must ask for blockDim.x + 1 reals. Asking for blockDim.x, the halo is written past
// the end: on a GPU into another block's shared memory, or a fault.
#include "common.cuh"

extern "C" __global__ void forward_difference(const real* x, real* out, int n) {
    extern __shared__ real staged[];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    staged[t] = i < n ? x[i] : (real)0;
    if (t == 0) staged[blockDim.x] = i + (int)blockDim.x < n ? x[i + blockDim.x] : (real)0;
    __syncthreads();
    if (i < n) out[i] = staged[t + 1] - staged[t];
}
