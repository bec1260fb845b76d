// conv3x3.cu: 3x3 convolution (cross-correlation, as PyTorch), stride 1, zero padding 0 ("valid") or 1 ("same").
//
// forward:     x (N, Ci, H, W), w (Co, Ci, 3, 3), b (Co,) -> y (N, Co, Ho, Wo), Ho = H - 2 + 2*pad, Wo likewise,
//              y[n,o,i,j] = b[o] + sum_{c,ky,kx} x[n, c, i+ky-pad, j+kx-pad] * w[o,c,ky,kx]  (x = 0 outside).
//              No bias: has_bias = 0 (b is then never read; pass any valid pointer).
// grad_input:  gy (N, Co, Ho, Wo), w -> gx (N, Ci, H, W),
//              gx[n,c,p,q] = sum_{o,ky,kx} gy[n, o, p-ky+pad, q-kx+pad] * w[o,c,ky,kx]  (gy = 0 outside).
// grad_weight: x, gy -> gw (Co, Ci, 3, 3), gw[o,c,ky,kx] = sum_{n,i,j} gy[n,o,i,j] * x[n, c, i+ky-pad, j+kx-pad].
//
// Kernel versions:
//   conv3x3_forward_v1: one thread per OUTPUT element, direct loops over Ci and the 9 taps. Every input
//       value is read from global memory 9*Co times; the readable baseline.
//   conv3x3_forward_v2: shared-memory tiling. A block of TILE x TILE threads computes a TILE x TILE output
//       tile for COUT output channels. Per input channel it loads the (TILE+2)^2 input tile with its 1-pixel
//       halo (zeros outside the image: that is the padding) and the COUT x 9 weights into __shared__, then
//       each thread accumulates its pixel for all COUT channels from shared memory. Each input value is now
//       read from global memory about once per COUT channels instead of 9*COUT times.
//   conv3x3_grad_input_v1: one thread per INPUT element gathers over Co and the 9 taps (the forward's
//       transpose). A gather, not a scatter: no atomics, deterministic, every element written once.
//   conv3x3_grad_weight_v1: one block per (o, c) pair computes its 9 weights: threads stride over the
//       N*Ho*Wo output pixels keeping 9 partial sums, then a shared-memory tree reduction. Deterministic
//       (fixed summation order, no atomics). Launch with exactly CONV3X3_GW_THREADS threads per block.
//
// The launch configurations are in minunet/backends/kernel_conv.py; the tile sizes there must match the
// #defines here. Checked by `pytest tests/test_conv_ops.py` against minunet/backends/numpy_conv.py on the
// sim device (and cuda with a GPU), both dtypes, both paddings, every version.
#include "common.cuh"

#define CONV3X3_V2_TILE 16     // forward v2: output tile edge; the block is (TILE, TILE, 1) threads
#define CONV3X3_V2_COUT 8      // forward v2: output channels per block (accumulators per thread)
#define CONV3X3_GW_THREADS 256 // grad_weight v1: threads per block, a power of two for the tree reduction

extern "C" __global__ void conv3x3_forward_v1(const real* x, const real* w, const real* b, real* y,
                                              int N, int Ci, int H, int W, int Co, int pad, int has_bias) {
    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into y: ((n*Co + o)*Ho + oy)*Wo + ox
    if (i >= N * Co * Ho * Wo) return;
    int ox = i % Wo;
    int oy = (i / Wo) % Ho;
    int o = (i / (Wo * Ho)) % Co;
    int n = i / (Wo * Ho * Co);
    real sum = has_bias ? b[o] : (real)0;
    for (int c = 0; c < Ci; c++) {
        const real* xc = x + (n * Ci + c) * H * W;
        const real* wc = w + (o * Ci + c) * 9;
        for (int ky = 0; ky < 3; ky++) {
            int iy = oy + ky - pad;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < 3; kx++) {
                int ix = ox + kx - pad;
                if (ix < 0 || ix >= W) continue;
                sum += xc[iy * W + ix] * wc[ky * 3 + kx];
            }
        }
    }
    y[i] = sum;
}

// grid = (ceil(Wo/TILE), ceil(Ho/TILE), N * ceil(Co/COUT)), block = (TILE, TILE, 1).
extern "C" __global__ void conv3x3_forward_v2(const real* x, const real* w, const real* b, real* y,
                                              int N, int Ci, int H, int W, int Co, int pad, int has_bias) {
    const int T = CONV3X3_V2_TILE, TH = CONV3X3_V2_TILE + 2;  // TH: tile with its halo
    __shared__ real tile[CONV3X3_V2_TILE + 2][CONV3X3_V2_TILE + 2];
    __shared__ real wtile[CONV3X3_V2_COUT][9];

    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int co_groups = (Co + CONV3X3_V2_COUT - 1) / CONV3X3_V2_COUT;
    int n = blockIdx.z / co_groups;
    int o0 = (blockIdx.z % co_groups) * CONV3X3_V2_COUT;
    int oy0 = blockIdx.y * T, ox0 = blockIdx.x * T;  // the tile's top-left output pixel
    int tid = threadIdx.y * T + threadIdx.x;

    real acc[CONV3X3_V2_COUT];
    for (int k = 0; k < CONV3X3_V2_COUT; k++) acc[k] = (real)0;

    for (int c = 0; c < Ci; c++) {
        // Every thread helps load, including those whose output pixel lies outside a partial tile:
        // all threads must reach both __syncthreads.
        const real* xc = x + (n * Ci + c) * H * W;
        for (int k = tid; k < TH * TH; k += T * T) {
            int iy = oy0 + k / TH - pad, ix = ox0 + k % TH - pad;
            tile[k / TH][k % TH] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : (real)0;
        }
        if (tid < CONV3X3_V2_COUT * 9) {
            int o = o0 + tid / 9;
            wtile[tid / 9][tid % 9] = (o < Co) ? w[(o * Ci + c) * 9 + tid % 9] : (real)0;
        }
        __syncthreads();
        real v[9];  // this thread's 3x3 window, read once and used for all COUT channels
        for (int k = 0; k < 9; k++) v[k] = tile[threadIdx.y + k / 3][threadIdx.x + k % 3];
        for (int j = 0; j < CONV3X3_V2_COUT; j++)
            for (int k = 0; k < 9; k++) acc[j] += v[k] * wtile[j][k];
        __syncthreads();  // before the next channel overwrites the tile
    }

    int oy = oy0 + threadIdx.y, ox = ox0 + threadIdx.x;
    if (oy >= Ho || ox >= Wo) return;  // after the last barrier, so leaving early is safe
    for (int j = 0; j < CONV3X3_V2_COUT; j++) {
        int o = o0 + j;
        if (o < Co) y[((n * Co + o) * Ho + oy) * Wo + ox] = acc[j] + (has_bias ? b[o] : (real)0);
    }
}

extern "C" __global__ void conv3x3_grad_input_v1(const real* gy, const real* w, real* gx,
                                                 int N, int Ci, int H, int W, int Co, int pad) {
    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx: ((n*Ci + c)*H + iy)*W + ix
    if (i >= N * Ci * H * W) return;
    int ix = i % W;
    int iy = (i / W) % H;
    int c = (i / (W * H)) % Ci;
    int n = i / (W * H * Ci);
    real sum = (real)0;
    for (int o = 0; o < Co; o++) {
        const real* gyo = gy + (n * Co + o) * Ho * Wo;
        const real* wo = w + (o * Ci + c) * 9;
        for (int ky = 0; ky < 3; ky++) {
            int oy = iy - ky + pad;  // the output row that saw this input row through tap ky
            if (oy < 0 || oy >= Ho) continue;
            for (int kx = 0; kx < 3; kx++) {
                int ox = ix - kx + pad;
                if (ox < 0 || ox >= Wo) continue;
                sum += gyo[oy * Wo + ox] * wo[ky * 3 + kx];
            }
        }
    }
    gx[i] = sum;
}

// grid = (Co * Ci, 1, 1), block = (CONV3X3_GW_THREADS, 1, 1).
extern "C" __global__ void conv3x3_grad_weight_v1(const real* x, const real* gy, real* gw,
                                                  int N, int Ci, int H, int W, int Co, int pad) {
    __shared__ real partial[9][CONV3X3_GW_THREADS];
    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int o = blockIdx.x / Ci, c = blockIdx.x % Ci;
    int t = threadIdx.x;

    real acc[9];
    for (int k = 0; k < 9; k++) acc[k] = (real)0;
    for (int p = t; p < N * Ho * Wo; p += CONV3X3_GW_THREADS) {
        int ox = p % Wo, oy = (p / Wo) % Ho, n = p / (Wo * Ho);
        real g = gy[((n * Co + o) * Ho + oy) * Wo + ox];
        const real* xc = x + (n * Ci + c) * H * W;
        for (int ky = 0; ky < 3; ky++) {
            int iy = oy + ky - pad;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < 3; kx++) {
                int ix = ox + kx - pad;
                if (ix < 0 || ix >= W) continue;
                acc[ky * 3 + kx] += g * xc[iy * W + ix];
            }
        }
    }
    for (int k = 0; k < 9; k++) partial[k][t] = acc[k];
    __syncthreads();
    // Tree reduction: halve the active threads each step; the order of additions is fixed.
    for (int s = CONV3X3_GW_THREADS / 2; s > 0; s >>= 1) {
        if (t < s)
            for (int k = 0; k < 9; k++) partial[k][t] += partial[k][t + s];
        __syncthreads();
    }
    if (t < 9) gw[blockIdx.x * 9 + t] = partial[t][0];
}
