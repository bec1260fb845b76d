// Writes one element past the end of a shared array: on a GPU into whatever follows it.
#include "common.cuh"

extern "C" __global__ void write_past_shared_array(real* out, int past) {
    __shared__ real first[32];
    __shared__ real second[32];
    int t = threadIdx.x;
    second[t] = (real)1;
    first[t + past] = (real)t;  // the bug when past > 0: thread 31 writes first[32]
    __syncthreads();
    out[t] = second[t];
}
