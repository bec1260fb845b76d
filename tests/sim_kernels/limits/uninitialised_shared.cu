// Block maxima through a shared variable nobody initialises (the bug): the poison must reach the output.
#include "common.cuh"

extern "C" __global__ void int_max_without_init(const int* x, int* out) {
    __shared__ int best;
    atomicMax(&best, x[blockIdx.x * blockDim.x + threadIdx.x]);  // -1 as the poison would give the right max
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = best;
}

extern "C" __global__ void fmax_without_init(const real* x, real* out) {
    __shared__ real best;
    if (threadIdx.x == 0)
        for (int k = 0; k < blockDim.x; k++) best = fmax(best, x[blockIdx.x * blockDim.x + k]);  // fmax drops a NaN
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = best;
}
