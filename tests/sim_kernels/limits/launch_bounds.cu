// Compiled for at most BOUNDED_THREADS threads per block: a larger block is refused by a GPU.
#include "common.cuh"

#define BOUNDED_THREADS (64 * 2)

extern "C" __global__ void __launch_bounds__(BOUNDED_THREADS, 4) bounded(real* out) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = (real)threadIdx.x;
}

extern "C" __global__ void unbounded(real* out) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = (real)threadIdx.x;
}
