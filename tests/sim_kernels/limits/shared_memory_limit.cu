// 40 KB of static shared memory: 8 KB of dynamic fit in the 48 KB a block gets without opting in.
#include "common.cuh"

#define STATIC_TILE_BYTES (40 * 1024)

// A helper's shared array counts for the kernels that call it, as on a GPU.
template <int BYTES> __device__ void fill_tile(real* out) {
    __shared__ unsigned char tile[BYTES];
    for (int k = threadIdx.x; k < BYTES; k += blockDim.x) tile[k] = (unsigned char)k;
    __syncthreads();
    out[threadIdx.x] = (real)tile[threadIdx.x];
}

extern "C" __global__ void static_and_dynamic(real* out) {
    extern __shared__ real extra[];
    fill_tile<STATIC_TILE_BYTES>(out);
    extra[threadIdx.x] = out[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] += extra[0];
}

extern "C" __global__ void dynamic_only(real* out) {
    extern __shared__ real extra[];
    extra[threadIdx.x] = (real)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = extra[(threadIdx.x + 1) % blockDim.x];
}
