// Correct kernels for tests/test_sim.py, one feature of the simulator each. Built for float and double.
#include "common.cuh"

#define BLOCK_SUM_THREADS 256

extern "C" __global__ void vector_add(const real* a, const real* b, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

// out[block] = sum of x[block*256 .. block*256+255] (zeros past n), by a shared-memory tree.
extern "C" __global__ void block_sum(const real* x, real* out, int n) {
    __shared__ real partial[BLOCK_SUM_THREADS];
    int t = threadIdx.x, i = blockIdx.x * BLOCK_SUM_THREADS + t;
    partial[t] = i < n ? x[i] : (real)0;
    __syncthreads();
    for (int stride = BLOCK_SUM_THREADS / 2; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

// out[i] = x[i-1] within a block (x[i] for the block's first thread), through shared memory.
extern "C" __global__ void shift_right(const real* x, real* out) {
    __shared__ real tile[128];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    tile[t] = x[i];
    __syncthreads();
    out[i] = tile[t > 0 ? t - 1 : 0];
}

// Each thread writes what its coordinates are: checks threadIdx/blockIdx/blockDim/gridDim in 3D.
extern "C" __global__ void coordinates(int* out) {
    int tx = threadIdx.x + blockIdx.x * blockDim.x;
    int ty = threadIdx.y + blockIdx.y * blockDim.y;
    int tz = threadIdx.z + blockIdx.z * blockDim.z;
    int width = blockDim.x * gridDim.x, height = blockDim.y * gridDim.y;
    int i = (tz * height + ty) * width + tx;
    out[4 * i + 0] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z;
    out[4 * i + 1] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
    out[4 * i + 2] = blockDim.x + 10 * blockDim.y + 100 * blockDim.z;
    out[4 * i + 3] = gridDim.x + 10 * gridDim.y + 100 * gridDim.z;
}

// Every warp function on value = 1 + linear thread id; out has 6 values per thread.
extern "C" __global__ void warp_shuffles(real* out, int src, int delta, int lane_mask, int width) {
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    real v = (real)(1 + t);
    real* o = out + 6 * t;
    o[0] = __shfl_sync(0xffffffffu, v, src, width);
    o[1] = __shfl_up_sync(0xffffffffu, v, delta, width);
    o[2] = __shfl_down_sync(0xffffffffu, v, delta, width);
    o[3] = __shfl_xor_sync(0xffffffffu, v, lane_mask, width);
    o[4] = (real)__shfl_down_sync(0xffffffffu, t, delta);  // int shuffle, full width
    __syncwarp();
    o[5] = (real)__shfl_xor_sync(0xffffffffu, (double)v * 0.5, lane_mask);
}

// Warp sum with a shuffle tree: out[warp] = sum over its 32 lanes (blocks of a multiple of 32 threads).
extern "C" __global__ void warp_sum(const real* x, real* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    real v = x[i];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) out[i / 32] = v;
}

// Atomics: counts[0] += 1 (int), total += x (real), counts[1] = max, counts[2] = min, counts[3] = CAS winner.
extern "C" __global__ void atomics(const real* x, int* counts, real* total, unsigned int* bits, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&counts[0], 1);
    atomicAdd(total, x[i]);
    atomicMax(&counts[1], i);
    atomicMin(&counts[2], i);
    atomicCAS(&counts[3], -1, i);  // only the first thread to arrive succeeds
    atomicOr(&bits[0], 1u << (i % 32));
    atomicAdd(&bits[1], 2u);
    atomicExch(&counts[4], 7);
}

// Reverses each block's slice through dynamic shared memory (shared_mem = blockDim.x * sizeof(real)).
extern "C" __global__ void reverse_dynamic(const real* x, real* out) {
    extern __shared__ real buffer[];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    buffer[t] = x[i];
    __syncthreads();
    out[i] = buffer[blockDim.x - 1 - t];
}

// Only block 0 fills the shared tile; every block reads it. Other blocks must see the poison, not block 0's data.
extern "C" __global__ void static_shared_reuse(real* out) {
    __shared__ real tile[64];
    int t = threadIdx.x;
    if (blockIdx.x == 0) tile[t] = (real)(t + 1);
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = tile[t];
}

// Reads dynamic shared memory that nobody wrote.
extern "C" __global__ void read_unwritten_dynamic(real* out) {
    extern __shared__ real buffer[];
    out[threadIdx.x] = buffer[threadIdx.x];
}

extern "C" __global__ void scalar_types(real* out, real r, float f, double d, int i, unsigned int u) {
    out[0] = r;
    out[1] = (real)f;
    out[2] = (real)d;
    out[3] = (real)i;
    out[4] = (real)u;
    out[5] = (real)(sqrtf(f) + rsqrtf(f) + expf(f) + __expf(f) + logf(f) + fmaxf(f, 1.0f) + max(i, 3) + min(u, 2u));
}

extern "C" __global__ void say_hello(int value) {
    if (threadIdx.x == 0) printf("hello from the simulator: %d\n", value);
}

// Warp votes on predicate = (x[i] > 0): out[i] = ballot, any, all of the thread's warp.
extern "C" __global__ void warp_votes(const real* x, unsigned int* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int positive = x[i] > (real)0;
    out[3 * i + 0] = __ballot_sync(0xffffffffu, positive);
    out[3 * i + 1] = __any_sync(0xffffffffu, positive);
    out[3 * i + 2] = __all_sync(0xffffffffu, positive);
}
