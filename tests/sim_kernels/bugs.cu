// Buggy kernels for tests/test_sim.py: the simulator must report each bug as a SimError.
#include "common.cuh"

// The block_sum of basics.cu without the barrier between the loads and the tree.
extern "C" __global__ void block_sum_missing_sync(const real* x, real* out, int n) {
    __shared__ real partial[256];
    int t = threadIdx.x, i = blockIdx.x * 256 + t;
    partial[t] = i < n ? x[i] : (real)0;
    for (int stride = 128; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

// shift_right of basics.cu without its barrier: right by luck in thread order, wrong in shuffled order.
extern "C" __global__ void shift_right_missing_sync(const real* x, real* out) {
    __shared__ real tile[128];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    tile[t] = x[i];
    out[i] = tile[t > 0 ? t - 1 : 0];
}

extern "C" __global__ void early_return(real* out, int n) {
    __shared__ real tile[128];
    int t = threadIdx.x;
    if (t >= n) return;  // the bug: these threads never reach the barrier
    tile[t] = (real)t;
    __syncthreads();
    out[t] = tile[(t + 1) % n];
}

extern "C" __global__ void divergent_barrier(real* out) {
    int t = threadIdx.x;
    if (t % 2 == 0) {
        __syncthreads();
        out[t] = (real)1;
    } else {
        __syncthreads();
        out[t] = (real)2;
    }
}

extern "C" __global__ void write_far_out_of_bounds(real* out, int stride) {
    if (blockIdx.x == gridDim.x - 1)  // terabytes past the array, from the last block
        out[(long long)stride * 1000000000LL * (threadIdx.x + 1)] = (real)1;
}

extern "C" __global__ void stack_overflow(real* out, int n) {
    volatile real big[64 * 1024];  // 256 KB or 512 KB of locals: more than a fiber's stack
    for (int k = 0; k < n; k++) big[k] = (real)k;
    out[threadIdx.x] = big[n / 2];
}

extern "C" __global__ void shuffle_after_exit(real* out) {
    int t = threadIdx.x;
    if (t == 5) return;
    out[t] = __shfl_down_sync(0xffffffffu, (real)t, 1);
}

extern "C" __global__ void failed_assert(real* out) {
    assert(threadIdx.x < 3);
    out[threadIdx.x] = (real)1;
}

extern "C" __global__ void integer_divide_by_zero(int* out, int divisor) {
    out[threadIdx.x] = 100 / (divisor + (int)threadIdx.x - 2);
}
