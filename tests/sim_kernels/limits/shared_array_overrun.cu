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

// Not inlined, so no array bound is in sight: only the redzone after the array sees the write.
__device__ __noinline__ void store(real* row, int at, real value) { row[at] = value; }

// The same bug through a pointer.
extern "C" __global__ void write_past_through_pointer(real* out, int past) {
    __shared__ real first[32];
    __shared__ real second[32];
    int t = threadIdx.x;
    second[t] = (real)1;
    store(first, t + past, (real)t);
    __syncthreads();
    out[t] = second[t];
}
