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
//   conv3x3_grad_input_v2: forward v2's shared-memory tiling applied to gy (the same device function,
//       conv3x3_tiled): grad_input is the forward with the weights transposed (o <-> c), flipped (tap t ->
//       8-t) and padding 2-pad. Each gy value is read from global memory once per COUT input channels
//       instead of 9*Ci times.
//   conv3x3_grad_weight_v2: shared-memory tiling of v1. One block per (o, group of GW_CIN = 4 input
//       channels) walks over the TILE x TILE output tiles; per tile it stages the 4 x tiles with their halos
//       in __shared__, each thread multiplies its own gy value into 4 x 9 accumulators, then one tree
//       reduction per channel as in v1. gy is read Ci/4 times instead of Ci times, and each x value once
//       per tile instead of 9 times.
//
// The implicit-GEMM versions. A 3x3 convolution is a matrix product whose second operand is never built:
//   forward      y[o, q]  = sum_k  w[o, k] * X[k, q]      k = (c, ky, kx) in Ci*9, q = (n, oy, ox) in N*Ho*Wo,
//                X[k, q]  = x[n, c, oy+ky-pad, ox+kx-pad]  ("im2col", gathered on the fly from x);
//   grad_input   gx[c, q] = sum_k  w'[c, k] * G[k, q]      the forward applied to gy with the weights transposed
//                (o <-> c) and flipped (tap t -> 8-t) and padding 2-pad: k = (o, ky, kx), q a pixel of x;
//   grad_weight  gw[o, j] = sum_q  gy[o, q] * X[j, q]      j = (c, ky, kx): a product whose REDUCTION runs over
//                all N*Ho*Wo pixels, so it is split over blocks ("split-K", see below).
// All of them use one block-tile routine, minunet_gemm_fma of gemm_tile.cuh (or minunet_gemm_tf32): a block
// of 256 threads owns a BM x BN tile of the product; per step it stages a 16-deep slice of both operands in
// shared memory with gemm_tile.cuh's stagers (zeros outside the matrices: that is the padding and the
// partial tiles), then every thread accumulates a (BM/16) x (BN/16) block of outputs in registers (its rows
// contiguous, read with 16-byte loads; its columns interleaved by 16, so that neighbouring threads read
// neighbouring shared words and write neighbouring pixels, coalesced). v3 and v5 use 64 x 64 tiles, v4
// 128 x 128.
//   conv3x3_forward_v3: register-blocked implicit GEMM, 64 output channels x 64 pixels per block, with a
//       fused epilogue: bias and (relu = 1) max(., 0) applied before the single write of y. Why it should
//       beat v2 (expected, not yet measured on a GPU): each x value is loaded once per tap for 64 output
//       channels (v2: once for 8), and each thread does 16 FMAs per 5 shared-memory loads (v2: about 1 per
//       value loaded); tutorials/03b-gemm-ladder.md counts both in the SASS. The pixel dimension runs
//       over N*Ho*Wo, so the 28x28 layers with 1024 channels still fill the GPU (grid 13 x 16 blocks).
//   conv3x3_forward_v4: v3 with a 128 x 128 block tile, 8 x 8 outputs per thread: 64 FMAs per 10 shared
//       loads (v3: 16 per 5) and each operand value loaded from global memory half as often. The price:
//       about twice the registers (fewer blocks per SM), a quarter as many blocks (the 1024-channel layers
//       give only 7 x 8 of them) and half-empty tiles where Co = 64. Which wins is a question for the GPU.
//   conv3x3_forward_v5: v3 with the block tile multiplied on tensor cores in TF32 (mma.sync.m16n8k8, inputs
//       rounded to 10 mantissa bits, float accumulation): 8 warps, each a 32 x 16 piece (2 x 2 mma tiles).
//       Off by default (TF32 changes results at the 1e-3 level); float32 only; sm_80 or newer. The
//       simulator runs it with an emulation of the documented fragment layout (minunet_mma_tf32), so the
//       indexing is checked on the CPU; the PTX itself only on a GPU (tests marked gpu).
//   conv3x3_grad_input_v3: the forward's implicit GEMM on gy with transposed, flipped weights (no atomics:
//       every gx element is one thread's sum). v1 reads each gy value 9*Ci times from global memory, v2
//       once per 8 input channels, v3 once per 64, with 16 FMAs per 5 shared loads (v2: about 1 per load).
//   conv3x3_grad_input_v4: v3 with the 128 x 128 tile of forward_v4.
//   conv3x3_grad_input_v5: v3 on tensor cores (TF32), as forward_v5.
//   conv3x3_grad_weight_v3: split-K implicit GEMM. Block z takes a slice ("chunk", a multiple of BK = 16) of the
//       N*Ho*Wo pixels and writes its 64 x 64 partial product to partial[z]; gemm_split_k_reduce
//       (gemm_tile.cuh) adds the slices in order of z. Deterministic (no atomics, fixed order). v1 reads x
//       Co times and gy Ci times (one block per (o, c) pair), v2 x Co times and gy Ci/4 times; v3 reads
//       each once per 64 channels, and its grid (slices x tiles) fills the GPU where v1 and v2 have only
//       Co*Ci blocks.
//   conv3x3_grad_weight_v4: v3 with the 128 x 128 tile of forward_v4, same reduction.
//   conv3x3_grad_weight_v5: v3 on tensor cores (TF32), same reduction.
//
// So every direction has the same ladder: v1 naive, v2 shared-memory tile, v3 register-blocked implicit
// GEMM (the default), v4 the same with a bigger register block, v5 TF32 tensor cores (off by default).
// NVRTC's resource report for all of them (no spills on sm_75..sm_90): `python -m minunet.nvrtc conv3x3`;
// timings on the U-Net's layers: `python -m minunet.bench` (benchmarks/README.md). Without a GPU the
// defaults (DEFAULT_VERSIONS in minunet/ops/launching.py) were chosen by the traffic arguments above;
// the GPU benchmark decides (v3 or v4).
//
// Each kernel is launched by its launcher, the function of the same name in minunet/ops/conv3x3.py (e.g.
// `def conv3x3_forward_v3`), which writes its block, grid and shared memory; the tile sizes are the #defines
// here and in gemm_tile.cuh (MINUNET_GEMM_*), read once through minunet/ops/launching.py. Checked by
// `pytest tests/test_conv3x3.py` against the readable loops of minunet/reference.py on the sim device (and
// cuda with a GPU), both dtypes, both paddings, every version; the GEMM versions also by
// `pytest tests/test_conv3x3_versions.py` (odd channel counts, gradient checks through each version).
#include "common.cuh"
#include "gemm_tile.cuh"  // minunet_gemm_fma, minunet_gemm_tf32, the MINUNET_GEMM_* tile sizes, gemm_split_k_reduce

#define CONV3X3_V2_TILE 16     // the v2 kernels: output tile edge; the block is (TILE, TILE, 1) threads
#define CONV3X3_V2_COUT 8      // forward and grad_input v2: output channels per block (accumulators per thread)
#define CONV3X3_GW_THREADS 256 // grad_weight v1: threads per block, a power of two for the tree reduction
#define CONV3X3_GW_V2_CIN 4    // grad_weight v2: input channels per block (4 x 9 accumulators per thread)
#define CONV3X3_V3_BM 64       // the GEMM versions' block tiles (rows x columns of the product per block):
#define CONV3X3_V3_BN 64       //   v3 64 x 64,
#define CONV3X3_V4_BM 128      //   v4 128 x 128,
#define CONV3X3_V4_BN 128
#define CONV3X3_V5_BM 64       //   v5 (TF32) 64 x 64: minunet_gemm_tf32's 8 warps of 32 x 16 must cover it
#define CONV3X3_V5_BN 64

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

// out (N, Cout, Ho, Wo) = conv3x3 of img (N, Cimg, H, W) with a shared-memory tile, as forward v2 describes.
// kGradInput = false: the forward, w (Cout, Cimg, 3, 3). kGradInput = true: grad_input, img = gy, w read
// transposed and flipped, w[cimg, m, 8 - tap] with w (Cimg, Cout, 3, 3), and the caller passes pad = 2 - pad.
// grid = (ceil(Wo/TILE), ceil(Ho/TILE), N * ceil(Cout/COUT)), block = (TILE, TILE, 1).
template <bool kGradInput>
__device__ __forceinline__ void conv3x3_tiled(const real* img, const real* w, const real* bias, real* out,
                                              int N, int Cimg, int H, int W, int Cout, int pad, int has_bias) {
    const int T = CONV3X3_V2_TILE, TH = CONV3X3_V2_TILE + 2;  // TH: tile with its halo
    __shared__ real tile[CONV3X3_V2_TILE + 2][CONV3X3_V2_TILE + 2];
    __shared__ real wtile[CONV3X3_V2_COUT][9];

    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int co_groups = (Cout + CONV3X3_V2_COUT - 1) / CONV3X3_V2_COUT;
    int n = blockIdx.z / co_groups;
    int m0 = (blockIdx.z % co_groups) * CONV3X3_V2_COUT;
    int oy0 = blockIdx.y * T, ox0 = blockIdx.x * T;  // the tile's top-left output pixel
    int tid = threadIdx.y * T + threadIdx.x;

    real acc[CONV3X3_V2_COUT];
    for (int k = 0; k < CONV3X3_V2_COUT; k++) acc[k] = (real)0;

    for (int c = 0; c < Cimg; c++) {
        // Every thread helps load, including those whose output pixel lies outside a partial tile:
        // all threads must reach both __syncthreads.
        const real* img_c = img + (n * Cimg + c) * H * W;
        for (int k = tid; k < TH * TH; k += T * T) {
            int iy = oy0 + k / TH - pad, ix = ox0 + k % TH - pad;
            tile[k / TH][k % TH] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? img_c[iy * W + ix] : (real)0;
        }
        if (tid < CONV3X3_V2_COUT * 9) {
            int m = m0 + tid / 9, tap = tid % 9;
            real wv = (real)0;
            if (m < Cout) wv = kGradInput ? w[(c * Cout + m) * 9 + 8 - tap] : w[(m * Cimg + c) * 9 + tap];
            wtile[tid / 9][tap] = wv;
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
        int m = m0 + j;
        if (m < Cout) out[((n * Cout + m) * Ho + oy) * Wo + ox] = acc[j] + (has_bias ? bias[m] : (real)0);
    }
}

extern "C" __global__ void conv3x3_forward_v2(const real* x, const real* w, const real* b, real* y,
                                              int N, int Ci, int H, int W, int Co, int pad, int has_bias) {
    conv3x3_tiled<false>(x, w, b, y, N, Ci, H, W, Co, pad, has_bias);
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
    minunet_block_sum(partial, acc, t);  // common.cuh: the tree of chapter 2, for 9 sums
    if (t < 9) gw[blockIdx.x * 9 + t] = partial[t][0];
}

// grid = (ceil(W/TILE), ceil(H/TILE), N * ceil(Ci/COUT)), block = (TILE, TILE, 1).
extern "C" __global__ void conv3x3_grad_input_v2(const real* gy, const real* w, real* gx,
                                                 int N, int Ci, int H, int W, int Co, int pad) {
    conv3x3_tiled<true>(gy, w, w, gx, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, Ci, 2 - pad, 0);
}

// grid = (Co * ceil(Ci/GW_CIN), 1, 1), block = (TILE, TILE, 1): one block per output channel o and group of
// GW_CIN input channels walks over all TILE x TILE output tiles of all images.
extern "C" __global__ void conv3x3_grad_weight_v2(const real* x, const real* gy, real* gw,
                                                  int N, int Ci, int H, int W, int Co, int pad) {
    const int T = CONV3X3_V2_TILE, TH = CONV3X3_V2_TILE + 2, C = CONV3X3_GW_V2_CIN;
    __shared__ real tile[CONV3X3_GW_V2_CIN][CONV3X3_V2_TILE + 2][CONV3X3_V2_TILE + 2];
    __shared__ real partial[9][CONV3X3_GW_THREADS];
    static_assert(CONV3X3_V2_TILE * CONV3X3_V2_TILE == CONV3X3_GW_THREADS, "minunet_block_sum needs the whole block");
    int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad;
    int c_groups = (Ci + C - 1) / C;
    int o = blockIdx.x / c_groups, c0 = (blockIdx.x % c_groups) * C;
    int tid = threadIdx.y * T + threadIdx.x;
    int tiles_x = (Wo + T - 1) / T, tiles_y = (Ho + T - 1) / T;

    real acc[CONV3X3_GW_V2_CIN][9];
    for (int cc = 0; cc < C; cc++)
        for (int k = 0; k < 9; k++) acc[cc][k] = (real)0;
    for (int t = 0; t < N * tiles_y * tiles_x; t++) {
        int n = t / (tiles_y * tiles_x), oy0 = (t / tiles_x) % tiles_y * T, ox0 = t % tiles_x * T;
        int oy = oy0 + threadIdx.y, ox = ox0 + threadIdx.x;
        // gy is read by its own thread only (a register); x is shared: each value feeds 9 threads' taps.
        real g = (oy < Ho && ox < Wo) ? gy[((n * Co + o) * Ho + oy) * Wo + ox] : (real)0;
        for (int k = tid; k < C * TH * TH; k += T * T) {
            int cc = k / (TH * TH), r = k % (TH * TH);
            int iy = oy0 + r / TH - pad, ix = ox0 + r % TH - pad;
            bool inside = c0 + cc < Ci && iy >= 0 && iy < H && ix >= 0 && ix < W;
            tile[cc][r / TH][r % TH] = inside ? x[((n * Ci + c0 + cc) * H + iy) * W + ix] : (real)0;
        }
        __syncthreads();
        for (int cc = 0; cc < C; cc++)
            for (int k = 0; k < 9; k++) acc[cc][k] += g * tile[cc][threadIdx.y + k / 3][threadIdx.x + k % 3];
        __syncthreads();  // before the next tile overwrites it
    }
    // One tree reduction per input channel of the group, as in v1 (fixed order: deterministic).
    for (int cc = 0; cc < C; cc++) {
        minunet_block_sum(partial, acc[cc], tid);
        if (tid < 9 && c0 + cc < Ci) gw[(o * Ci + c0 + cc) * 9 + tid] = partial[tid][0];
        __syncthreads();  // before the next channel overwrites partial
    }
}

// ================================================================ the implicit-GEMM versions

// The block tiles are gemm_tile.cuh's: minunet_gemm_fma on CUDA cores (shared with conv1x1.cu and
// up_conv2x2.cu), minunet_gemm_tf32 on TF32 tensor cores (v5).

// out (N, Cout, Ho, Wo) = conv3x3 of img (N, Cimg, H, W), as an implicit GEMM with a BM x BN block tile
// (grid: ceil(N*Ho*Wo / BN), ceil(Cout / BM)). kGradInput = false: the forward, A[o, k] = w[o, k], w (Cout, Cimg, 3, 3).
// kGradInput = true: grad_input, img = gy, A[c, (o, t)] = w[o, c, 8 - t], w (Cimg, Cout, 3, 3), and the
// caller passes pad = 2 - pad. Bias and ReLU are applied in the epilogue, before the one write of out.
template <int BM, int BN, bool kTensorCores, bool kGradInput>
__device__ __forceinline__ void conv3x3_image_gemm(const real* img, const real* w, const real* bias, real* out,
                                                   int N, int Cimg, int H, int W, int Cout, int pad,
                                                   int has_bias, int relu) {
    const int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad, P = Ho * Wo, K = Cimg * 9;
    const int m0 = blockIdx.y * BM, q0 = blockIdx.x * BN;
    // A (the weights) is staged k fastest, B (the im2col view of img) side fastest: each thread keeps one
    // column q of B for the whole loop, so its pixel (n, oy, ox) is found once, here.
    const minunet_stage_k_fastest<BM> stage_a;
    const minunet_stage_side_fastest<BN> stage_b;
    const int q = q0 + stage_b.i;
    const bool q_ok = q < N * P;
    const int qn = q_ok ? q / P : 0, qp = q_ok ? q - qn * P : 0;
    const int oy = qp / (Wo > 0 ? Wo : 1), ox = qp - oy * Wo;
    const real* img_n = img + (long long)qn * Cimg * H * W;

    auto load = [&](real (*As)[BM + MINUNET_GEMM_PAD], real (*Bs)[BN + MINUNET_GEMM_PAD], int k0) {
        const int k = k0 + stage_a.kk;
        stage_a(As, m0, [&](int m, int) {
            real v = (real)0;
            if (m < Cout && k < K) {
                const int c = k / 9, tap = k - 9 * c;  // kGradInput: c is the output channel o of the forward
                v = kGradInput ? w[(c * Cout + m) * 9 + 8 - tap] : w[m * K + k];
            }
            return v;
        });
        stage_b(Bs, [&](int kk) {
            const int kb = k0 + kk;
            real v = (real)0;
            if (q_ok && kb < K) {
                const int c = kb / 9, tap = kb - 9 * c, ky = tap / 3, kx = tap - 3 * ky;
                const int iy = oy + ky - pad, ix = ox + kx - pad;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = img_n[(c * H + iy) * W + ix];
            }
            return v;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int m = m0 + row, qq = q0 + col;
        if (m >= Cout || qq >= N * P) return;
        if (has_bias) v += bias[m];
        if (relu && v < (real)0) v = (real)0;  // a NaN stays NaN, as in relu_forward_v1 and PyTorch
        const int n = qq / P;
        out[(n * Cout + m) * P + (qq - n * P)] = v;
    };
    if constexpr (kTensorCores) minunet_gemm_tf32<BM, BN>(load, store, 0, K);
    else minunet_gemm_fma<BM, BN>(load, store, 0, K);
}

// partial[z] (Co, Ci*9) = sum over the pixels q in [z*chunk, min((z+1)*chunk, N*Ho*Wo)) of gy[o, q] * X[j, q].
// grid: (ceil(Ci*9 / BN), ceil(Co / BM), splits); chunk is a multiple of MINUNET_GEMM_BK.
template <int BM, int BN, bool kTensorCores>
__device__ __forceinline__ void conv3x3_grad_weight_gemm(const real* x, const real* gy, real* partial,
                                                         int N, int Ci, int H, int W, int Co, int pad, int chunk) {
    const int Ho = H - 2 + 2 * pad, Wo = W - 2 + 2 * pad, P = Ho * Wo, J = Ci * 9;
    const int j0 = blockIdx.x * BN, m0 = blockIdx.y * BM;
    const int k_begin = blockIdx.z * chunk;
    const int k_end = min(k_begin + chunk, N * P);
    // Both operands are read along the pixels, so both are staged k fastest: this thread loads pixel
    // k0 + kk of each slice, for the rows (output channels) at(p) of A and the columns (c, ky, kx) at(p) of B,
    // the same columns in every slice: their (c, ky, kx) are found once, here.
    const minunet_stage_k_fastest<BM> stage_a;
    const minunet_stage_k_fastest<BN> stage_b;
    int col_c[stage_b.PASSES], col_ky[stage_b.PASSES], col_kx[stage_b.PASSES];
#pragma unroll
    for (int r = 0; r < stage_b.PASSES; r++) {
        const int j = stage_b.at(j0, r);
        col_c[r] = j < J ? j / 9 : -1;  // -1: a column past the matrix, loads zeros
        const int tap = j - 9 * (j / 9);
        col_ky[r] = tap / 3;
        col_kx[r] = tap % 3;
    }

    auto load = [&](real (*As)[BM + MINUNET_GEMM_PAD], real (*Bs)[BN + MINUNET_GEMM_PAD], int k0) {
        const int q = k0 + stage_a.kk;
        const bool ok = q < k_end;
        const int n = ok ? q / P : 0, p = ok ? q - n * P : 0;
        const int oy = p / Wo, ox = p - oy * Wo;
        stage_a(As, m0, [&](int m, int) {
            return (ok && m < Co) ? gy[(n * Co + m) * P + p] : (real)0;
        });
        stage_b(Bs, j0, [&](int, int r) {
            real v = (real)0;
            if (ok && col_c[r] >= 0) {
                const int iy = oy + col_ky[r] - pad, ix = ox + col_kx[r] - pad;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[((n * Ci + col_c[r]) * H + iy) * W + ix];
            }
            return v;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int m = m0 + row, j = j0 + col;
        if (m < Co && j < J) partial[((long long)blockIdx.z * Co + m) * J + j] = v;
    };
    if constexpr (kTensorCores) minunet_gemm_tf32<BM, BN>(load, store, k_begin, k_end);
    else minunet_gemm_fma<BM, BN>(load, store, k_begin, k_end);
}

// The GEMM kernels: block MINUNET_GEMM_THREADS; v3 and v5 (TF32) with 64 x 64 block tiles, v4 with 128 x 128.
// forward: grid (ceil(N*Ho*Wo / BN), ceil(Co / BM)). relu = 1: y = max(conv + b, 0).
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_forward_v3(const real* x, const real* w, const real* b, real* y, int N, int Ci, int H, int W, int Co,
                   int pad, int has_bias, int relu) {
    conv3x3_image_gemm<CONV3X3_V3_BM, CONV3X3_V3_BN, false, false>(x, w, b, y, N, Ci, H, W, Co, pad, has_bias, relu);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_forward_v4(const real* x, const real* w, const real* b, real* y, int N, int Ci, int H, int W, int Co,
                   int pad, int has_bias, int relu) {
    conv3x3_image_gemm<CONV3X3_V4_BM, CONV3X3_V4_BN, false, false>(x, w, b, y, N, Ci, H, W, Co, pad, has_bias, relu);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_forward_v5(const real* x, const real* w, const real* b, real* y, int N, int Ci, int H, int W, int Co,
                   int pad, int has_bias, int relu) {
    conv3x3_image_gemm<CONV3X3_V5_BM, CONV3X3_V5_BN, true, false>(x, w, b, y, N, Ci, H, W, Co, pad, has_bias, relu);
}

// grad_input: grid (ceil(N*H*W / BN), ceil(Ci / BM)).
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_input_v3(const real* gy, const real* w, real* gx, int N, int Ci, int H, int W, int Co, int pad) {
    conv3x3_image_gemm<CONV3X3_V3_BM, CONV3X3_V3_BN, false, true>(gy, w, w, gx, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, Ci, 2 - pad, 0, 0);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_input_v4(const real* gy, const real* w, real* gx, int N, int Ci, int H, int W, int Co, int pad) {
    conv3x3_image_gemm<CONV3X3_V4_BM, CONV3X3_V4_BN, false, true>(gy, w, w, gx, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, Ci, 2 - pad, 0, 0);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_input_v5(const real* gy, const real* w, real* gx, int N, int Ci, int H, int W, int Co, int pad) {
    conv3x3_image_gemm<CONV3X3_V5_BM, CONV3X3_V5_BN, true, true>(gy, w, w, gx, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, Ci, 2 - pad, 0, 0);
}

// grad_weight: grid (ceil(Ci*9 / BN), ceil(Co / BM), splits); then the reduce kernel.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_weight_v3(const real* x, const real* gy, real* partial, int N, int Ci, int H, int W, int Co, int pad,
                       int chunk) {
    conv3x3_grad_weight_gemm<CONV3X3_V3_BM, CONV3X3_V3_BN, false>(x, gy, partial, N, Ci, H, W, Co, pad, chunk);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_weight_v4(const real* x, const real* gy, real* partial, int N, int Ci, int H, int W, int Co, int pad,
                       int chunk) {
    conv3x3_grad_weight_gemm<CONV3X3_V4_BM, CONV3X3_V4_BN, false>(x, gy, partial, N, Ci, H, W, Co, pad, chunk);
}

extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv3x3_grad_weight_v5(const real* x, const real* gy, real* partial, int N, int Ci, int H, int W, int Co, int pad,
                       int chunk) {
    conv3x3_grad_weight_gemm<CONV3X3_V5_BM, CONV3X3_V5_BN, true>(x, gy, partial, N, Ci, H, W, Co, pad, chunk);
}

