// Memory read before anything wrote it, hidden by the instruction that reads it (issue #26). The simulator's
// NaN / INT_MAX poison shows only when the value flows through arithmetic: a NaN loses every comparison and
// INT_MAX every minimum, so each bug below gives a plausible result without the initcheck mode.
// Each kernel takes `correct`: 0 runs the bug, 1 its correct twin.
#include "common.cuh"

#define HALO_TILE 8                  // outputs per block side; block (HALO_TILE, HALO_TILE)
#define HALO_IN (HALO_TILE + 2)      // inputs per block side: the tile and a halo of one

// 3x3 max filter (valid): out is (height - 2) x (width - 2). The bug: the loader stops one row short, so the
// tile's last halo row is never written.
template <class T>
__device__ void load_halo_tile(T* tile, const T* x, int height, int width, int correct, T outside) {
    int r0 = blockIdx.y * HALO_TILE, c0 = blockIdx.x * HALO_TILE;
    int rows = correct ? HALO_IN : HALO_IN - 1;  // the bug: HALO_IN - 1
    for (int k = threadIdx.y * HALO_TILE + threadIdx.x; k < rows * HALO_IN; k += HALO_TILE * HALO_TILE) {
        int r = k / HALO_IN, c = k % HALO_IN;
        tile[k] = r0 + r < height && c0 + c < width ? x[(r0 + r) * width + c0 + c] : outside;
    }
}

// how: 0 a compare and select, 1 fmax, 2 a shuffle (each lane passes its window's bottom-row maximum to its
// neighbour, which compares it with its own).
__device__ real window_max(const real* tile, int how) {
    int ty = threadIdx.y, tx = threadIdx.x;
    real best = -INFINITY, bottom = -INFINITY;
    for (int dr = 0; dr < 3; dr++)
        for (int dc = 0; dc < 3; dc++) {
            real v = tile[(ty + dr) * HALO_IN + tx + dc];
            if (how == 1) best = fmax(best, v);
            else if (how == 2 && dr == 2) bottom = v > bottom ? v : bottom;
            else best = v > best ? v : best;
        }
    if (how == 2) {  // lane ^ 1 is the neighbour in x (HALO_TILE is even): pass the bottom row's max across
        real theirs = __shfl_xor_sync(0xffffffffu, bottom, 1);
        real mine = __shfl_xor_sync(0xffffffffu, theirs, 1);
        best = mine > best ? mine : best;
    }
    return best;
}

__device__ void store_window_max(real* out, real best, int height, int width) {
    int r = blockIdx.y * HALO_TILE + threadIdx.y, c = blockIdx.x * HALO_TILE + threadIdx.x;
    if (r < height - 2 && c < width - 2) out[r * (width - 2) + c] = best;
}

extern "C" __global__ void halo_max_filter(const real* x, real* out, int height, int width, int how, int correct) {
    __shared__ real tile[HALO_IN * HALO_IN];
    load_halo_tile(tile, x, height, width, correct, (real)-INFINITY);
    __syncthreads();
    store_window_max(out, window_max(tile, how), height, width);
}

// The same with the tile in dynamic shared memory (HALO_IN * HALO_IN reals).
extern "C" __global__ void halo_max_filter_dynamic(const real* x, real* out, int height, int width, int correct) {
    extern __shared__ real halo_tile[];
    load_halo_tile(halo_tile, x, height, width, correct, (real)-INFINITY);
    __syncthreads();
    store_window_max(out, window_max(halo_tile, 0), height, width);
}

// Integer: a 3x3 minimum filter; INT_MAX, the poison, loses every minimum.
extern "C" __global__ void halo_min_filter_int(const int* x, int* out, int height, int width, int correct) {
    __shared__ int tile[HALO_IN * HALO_IN];
    load_halo_tile(tile, x, height, width, correct, 2147483647);
    __syncthreads();
    int least = 2147483647;
    for (int dr = 0; dr < 3; dr++)
        for (int dc = 0; dc < 3; dc++) least = min(least, tile[(threadIdx.y + dr) * HALO_IN + threadIdx.x + dc]);
    int r = blockIdx.y * HALO_TILE + threadIdx.y, c = blockIdx.x * HALO_TILE + threadIdx.x;
    if (r < height - 2 && c < width - 2) out[r * (width - 2) + c] = least;
}

// An atomic on a shared counter nobody set: the block minimum by atomicMin.
extern "C" __global__ void block_min_atomic(const int* x, int* out, int correct) {
    __shared__ int least;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (correct && threadIdx.x == 0) least = x[i];
    __syncthreads();
    atomicMin(&least, x[i]);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = least;
}

// A 16-byte vector load: each thread takes the maximum of 4 staged floats, but only 3 of every 4 were staged.
extern "C" __global__ void vector_max(const float* x, float* out, int correct) {
    __shared__ float4 staged[32];
    int t = threadIdx.x;
    float* flat = reinterpret_cast<float*>(staged);
    for (int k = t; k < 4 * 32; k += blockDim.x)
        if (correct || k % 4 != 3) flat[k] = x[blockIdx.x * 4 * 32 + k];
    __syncthreads();
    float4 v = staged[t];
    float best = v.x;
    best = v.y > best ? v.y : best;
    best = v.z > best ? v.z : best;
    best = v.w > best ? v.w : best;
    out[blockIdx.x * 32 + t] = best;
}

// Global memory: a running maximum kept in the output, which nobody set first (on a GPU: whatever the
// allocation held). `out[i] > v ? out[i] : v` keeps v when out[i] is the NaN of an unwritten output.
extern "C" __global__ void running_max_in_output(const real* x, real* out, int n, int rows, int correct) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (correct) out[i] = x[i];
    for (int r = correct ? 1 : 0; r < rows; r++) {
        real kept = out[i], v = x[r * n + i];
        out[i] = kept > v ? kept : v;
    }
}
