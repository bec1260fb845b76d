// Needs blockDim.x reals of dynamic shared memory: a launch that asks for fewer bytes writes past the end
// (on a GPU: into another block's shared memory, or a fault).
#include "common.cuh"

extern "C" __global__ void reverse_in_dynamic_shared(const real* x, real* out) {
    extern __shared__ real staged[];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    staged[t] = x[i];
    __syncthreads();
    out[i] = staged[blockDim.x - 1 - t];
}
