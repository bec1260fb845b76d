// Every extern __shared__ array of a kernel starts at the same byte of the block's dynamic shared memory
// (issue #26). Two of them used as separate buffers overwrite each other on a GPU.
#include "common.cuh"

// The bug: keys and values are meant as two buffers of blockDim.x elements, but they are one.
extern "C" __global__ void two_extern_buffers(const real* x, const real* y, real* out) {
    extern __shared__ real keys[];
    extern __shared__ real values[];
    int t = threadIdx.x, n = blockDim.x;
    keys[t] = x[t];
    values[t] = y[t];
    __syncthreads();
    out[t] = keys[(t + 1) % n] * values[(t + 1) % n];
}

// The twin: one buffer of 2 * blockDim.x elements, carved into two.
extern "C" __global__ void one_buffer_carved(const real* x, const real* y, real* out) {
    extern __shared__ real staged[];
    int t = threadIdx.x, n = blockDim.x;
    real* keys = staged;
    real* values = staged + n;
    keys[t] = x[t];
    values[t] = y[t];
    __syncthreads();
    out[t] = keys[(t + 1) % n] * values[(t + 1) % n];
}

// Two names for one buffer on purpose: bytes and reals view the same memory (the comment on each
// declaration says so, and the simulator accepts it).
extern "C" __global__ void aliased_on_purpose(const real* x, real* out) {
    extern __shared__ real as_reals[];                  // minunet: aliases
    extern __shared__ unsigned char as_bytes[];         // minunet: aliases
    int t = threadIdx.x;
    as_reals[t] = x[t];
    __syncthreads();
    real back;
    for (int b = 0; b < (int)sizeof(real); b++)
        reinterpret_cast<unsigned char*>(&back)[b] = as_bytes[t * sizeof(real) + b];
    out[t] = back;
}
