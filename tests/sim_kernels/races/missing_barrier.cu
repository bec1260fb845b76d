// A tile in shared memory, reused for the next chunk without a barrier: a thread still reading the old chunk
// may see the new one (a write-after-read race). In thread order each thread reads its right neighbour
// before that neighbour overwrites it, so the result is right.
#include "common.cuh"

extern "C" __global__ void shift_chunks_left(const real* x, real* out, int chunks) {
    __shared__ real tile[64];
    int t = threadIdx.x;
    for (int c = 0; c < chunks; c++) {
        tile[t] = x[c * 64 + t];
        __syncthreads();
        out[c * 64 + t] = tile[t < 63 ? t + 1 : t];
        // the bug: a __syncthreads() is needed here, before the next chunk overwrites tile
    }
}
