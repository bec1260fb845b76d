// A __syncwarp where a __syncthreads is needed: a warp reads what the other warp wrote, but __syncwarp orders
// only the lanes of its own warp. Launch with 64 threads (two warps).
#include "common.cuh"

// Warp 0 reads warp 1's values: wrong whenever warp 0 runs first (the simulator's thread order).
extern "C" __global__ void rotate_by_a_warp(const real* x, real* out) {
    __shared__ real tile[64];
    int t = threadIdx.x;
    tile[t] = x[t];
    __syncwarp();  // the bug: __syncthreads() is needed, tile[(t + 32) % 64] is the other warp's
    out[t] = tile[(t + 32) % 64];
}

// Warp 1 reads warp 0's values: right in thread order, wrong when warp 1 runs ahead (shuffled order).
extern "C" __global__ void copy_from_warp_0(const real* x, real* out) {
    __shared__ real tile[32];
    int t = threadIdx.x;
    if (t < 32) tile[t] = x[t];
    __syncwarp();  // the bug: __syncthreads() is needed
    out[t] = tile[t % 32];
}

// A shuffle (or a vote) orders only its own warp too: warp 1 reads warp 0's value after a __shfl_sync.
extern "C" __global__ void read_after_a_shuffle(const real* x, real* out) {
    __shared__ real tile[32];
    int t = threadIdx.x;
    if (t < warpSize) tile[t] = x[t];
    real mine = __shfl_sync(0xffffffffu, x[t], 0);  // the bug: no __syncthreads() before reading tile
    out[t] = mine + tile[t % 32];
}
