// Global memory past either end of an argument array (issue #26). Every array the simulator hands a kernel
// ends against an inaccessible page, so the first byte past it faults; bytes before its start too.
#include "common.cuh"

#define LOADER_TILE 16

// A GEMM-style loader staging a row of a (rows x k) matrix in tiles of LOADER_TILE: the last tile is partial
// when k is not a multiple of the tile. The bug: no bounds check on the column, so the last row's partial tile
// reads past the end of a. The twin below checks it.
extern "C" __global__ void tile_loader_reads_past_end(const real* a, real* row_sums, int k) {
    __shared__ real tile[LOADER_TILE];
    int row = blockIdx.x, t = threadIdx.x;
    real sum = (real)0;
    for (int k0 = 0; k0 < k; k0 += LOADER_TILE) {
        tile[t] = a[row * k + k0 + t];  // the bug: reads a[row * k + k0 + t] with k0 + t >= k
        __syncthreads();
        if (t == 0)
            for (int j = 0; j < LOADER_TILE && k0 + j < k; j++) sum += tile[j];
        __syncthreads();
    }
    if (t == 0) row_sums[row] = sum;
}

extern "C" __global__ void tile_loader_checked(const real* a, real* row_sums, int k) {
    __shared__ real tile[LOADER_TILE];
    int row = blockIdx.x, t = threadIdx.x;
    real sum = (real)0;
    for (int k0 = 0; k0 < k; k0 += LOADER_TILE) {
        tile[t] = k0 + t < k ? a[row * k + k0 + t] : (real)0;
        __syncthreads();
        if (t == 0)
            for (int j = 0; j < LOADER_TILE && k0 + j < k; j++) sum += tile[j];
        __syncthreads();
    }
    if (t == 0) row_sums[row] = sum;
}

// A backward difference that writes its result one place to the left: out[i - 1] for i = 0 is a stray write
// before the array's start. The twin writes out[i].
extern "C" __global__ void difference_writes_before_start(const real* x, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i - 1] = x[i] - (i > 0 ? x[i - 1] : (real)0);  // the bug: i - 1
}

extern "C" __global__ void difference_checked(const real* x, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] - (i > 0 ? x[i - 1] : (real)0);
}

// A 3x3 stencil whose top halo row reads x[-width + j] at row 0 (no padding check): a read before the start.
extern "C" __global__ void stencil_reads_before_start(const real* x, real* out, int height, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= height * width) return;
    int r = i / width, c = i % width;
    real above = x[(r - 1) * width + c];  // the bug: r - 1 = -1 on the first row
    real below = r + 1 < height ? x[(r + 1) * width + c] : (real)0;
    out[i] = above + below;
}

extern "C" __global__ void stencil_checked(const real* x, real* out, int height, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= height * width) return;
    int r = i / width, c = i % width;
    real above = r > 0 ? x[(r - 1) * width + c] : (real)0;
    real below = r + 1 < height ? x[(r + 1) * width + c] : (real)0;
    out[i] = above + below;
}

// A forward difference whose last element reads x[n], one past the end: within the bytes that keep an array's
// address modulo 16 (the slack before the guard page), so the default mode does not fault; the canary there
// reads as NaN. The twin stops at the last element.
extern "C" __global__ void forward_difference_reads_past_end(const real* x, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i + 1] - x[i];  // the bug: x[n] for i = n - 1
}

extern "C" __global__ void forward_difference_checked(const real* x, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i + 1 < n ? x[i + 1] - x[i] : (real)0;
}
