// up_conv2x2.cu: 2x2 transposed convolution with stride 2 (U-Net's "up-convolution"), weight in PyTorch's
// ConvTranspose2d layout (Ci, Co, 2, 2). The 2x2 output blocks of neighbouring input pixels do not overlap,
// so every output pixel comes from exactly ONE input pixel per input channel:
//
// forward:     x (N, Ci, H, W), w (Ci, Co, 2, 2), b (Co,) -> y (N, Co, 2H, 2W),
//              y[n,o,2i+a,2j+d] = b[o] + sum_c x[n,c,i,j] * w[c,o,a,d]. No bias: has_bias = 0.
// grad_input:  gy (N, Co, 2H, 2W), w -> gx (N, Ci, H, W), gx[n,c,i,j] = sum_{o,a,d} gy[n,o,2i+a,2j+d] * w[c,o,a,d].
// grad_weight: x, gy -> gw (Ci, Co, 2, 2), gw[c,o,a,d] = sum_{n,i,j} x[n,c,i,j] * gy[n,o,2i+a,2j+d].
//
// Kernel versions:
//   up_conv2x2_forward_v1: one thread per OUTPUT element gathers its single input pixel from each of the
//       Ci channels (no scatter, no atomics).
//   up_conv2x2_grad_input_v1: one thread per INPUT element sums over Co and the 4 output pixels it produced.
//   up_conv2x2_grad_weight_v1: one block per (c, o) pair computes its 4 weights: threads stride over the
//       N*H*W input pixels keeping 4 partial sums, then the shared-memory tree reduction of common.cuh
//       (minunet_block_sum; deterministic).
//       Launch with exactly UP_CONV2X2_GW_THREADS threads per block.
//   The GEMM versions (v2): with r = (o, a, d) in Co*4, the op is a matrix product against w viewed as a
//   (Ci, Co*4) matrix, so each is minunet_gemm_fma, the register-blocked 64 x 64 block tile of gemm_tile.cuh,
//   whose stagers fill the slices through each kernel's element lambdas:
//   up_conv2x2_forward_v2: Y[r, q] = sum_c w[c, r] x[c, q] over the input pixels q of all N images, scattered
//       to y[n, o, 2i+a, 2j+d] with the bias in the epilogue. Each x value is read once per 64 rows r; v1
//       reads it 4*Co times (once per output pixel it feeds), which dominates the 28x28x1024 layer.
//   up_conv2x2_grad_input_v2: gx[c, q] = sum_r w[c, r] G[r, q], G[r, (i, j)] = gy[o, 2i+a, 2j+d].
//   up_conv2x2_grad_weight_v2: gw[c, r] = sum_q x[c, q] G[r, q], split-K over the N*H*W pixels: block z
//       writes its slice's partial product, gemm_split_k_reduce (gemm_tile.cuh) adds them in order
//       (deterministic, no atomics).
//
// Each kernel is launched by its launcher, the function of the same name in minunet/ops/up_conv2x2.py, which
// writes its block, grid and shared memory; the tile sizes are the #defines here and in gemm_tile.cuh, read
// once through minunet/ops/launching.py. Checked by `pytest tests/test_up_conv2x2.py`.
#include "common.cuh"
#include "gemm_tile.cuh"  // minunet_gemm_fma, the MINUNET_GEMM_* tile sizes, gemm_split_k_reduce

#define UP_CONV2X2_GW_THREADS 256  // grad_weight v1: threads per block, a power of two

extern "C" __global__ void up_conv2x2_forward_v1(const real* x, const real* w, const real* b, real* y,
                                                 int N, int Ci, int H, int W, int Co, int has_bias) {
    int Ho = 2 * H, Wo = 2 * W;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into y: ((n*Co + o)*Ho + oy)*Wo + ox
    if (i >= N * Co * Ho * Wo) return;
    int ox = i % Wo;
    int oy = (i / Wo) % Ho;
    int o = (i / (Wo * Ho)) % Co;
    int n = i / (Wo * Ho * Co);
    int k = 2 * (oy & 1) + (ox & 1);  // which of the 4 weights (a, d) of w[c, o] this pixel uses
    const real* xp = x + n * Ci * H * W + (oy / 2) * W + ox / 2;
    real sum = has_bias ? b[o] : (real)0;
    for (int c = 0; c < Ci; c++) sum += xp[c * H * W] * w[(c * Co + o) * 4 + k];
    y[i] = sum;
}

extern "C" __global__ void up_conv2x2_grad_input_v1(const real* gy, const real* w, real* gx,
                                                    int N, int Ci, int H, int W, int Co) {
    int Wo = 2 * W;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx: ((n*Ci + c)*H + iy)*W + ix
    if (i >= N * Ci * H * W) return;
    int ix = i % W;
    int iy = (i / W) % H;
    int c = (i / (W * H)) % Ci;
    int n = i / (W * H * Ci);
    real sum = (real)0;
    for (int o = 0; o < Co; o++) {
        const real* block = gy + ((n * Co + o) * 2 * H + 2 * iy) * Wo + 2 * ix;  // this pixel's 2x2 outputs
        const real* wco = w + (c * Co + o) * 4;
        sum += block[0] * wco[0] + block[1] * wco[1] + block[Wo] * wco[2] + block[Wo + 1] * wco[3];
    }
    gx[i] = sum;
}

// grid = (Ci * Co, 1, 1), block = (UP_CONV2X2_GW_THREADS, 1, 1).
extern "C" __global__ void up_conv2x2_grad_weight_v1(const real* x, const real* gy, real* gw,
                                                     int N, int Ci, int H, int W, int Co) {
    __shared__ real partial[4][UP_CONV2X2_GW_THREADS];
    int Wo = 2 * W;
    int c = blockIdx.x / Co, o = blockIdx.x % Co;  // gw is (Ci, Co, 2, 2): block index c*Co + o
    int t = threadIdx.x;
    real acc[4] = {(real)0, (real)0, (real)0, (real)0};
    for (int p = t; p < N * H * W; p += UP_CONV2X2_GW_THREADS) {
        int ix = p % W, iy = (p / W) % H, n = p / (W * H);
        real v = x[((n * Ci + c) * H + iy) * W + ix];
        const real* block = gy + ((n * Co + o) * 2 * H + 2 * iy) * Wo + 2 * ix;
        acc[0] += v * block[0];
        acc[1] += v * block[1];
        acc[2] += v * block[Wo];
        acc[3] += v * block[Wo + 1];
    }
    minunet_block_sum(partial, acc, t);  // common.cuh: a tree reduction of the 4 sums (deterministic)
    if (t < 4) gw[blockIdx.x * 4 + t] = partial[t][0];
}

// ================================================================ the GEMM versions

// The block tile is minunet_gemm_fma of gemm_tile.cuh (shared with conv3x3.cu and conv1x1.cu).

// grid (ceil(N*H*W / MINUNET_GEMM_BN), ceil(Co*4 / MINUNET_GEMM_BM)), block MINUNET_GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
up_conv2x2_forward_v2(const real* x, const real* w, const real* b, real* y, int N, int Ci, int H, int W, int Co,
                      int has_bias) {
    const int P = H * W, R = 4 * Co;
    const int m0 = blockIdx.y * MINUNET_GEMM_BM, q0 = blockIdx.x * MINUNET_GEMM_BN;
    const minunet_stage_side_fastest<MINUNET_GEMM_BM> stage_a;   // A = w^T, w[c, r] read along r
    const minunet_stage_side_fastest<MINUNET_GEMM_BN> stage_b;   // B = x, read along the pixels q
    const int q = q0 + stage_b.i;
    const bool q_ok = q < N * P;
    const int qn = q_ok ? q / P : 0, qp = q_ok ? q - qn * P : 0;
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        stage_a(As, [&](int kk) {
            const int c = k0 + kk, row = m0 + stage_a.i;
            return (row < R && c < Ci) ? w[c * R + row] : (real)0;
        });
        stage_b(Bs, [&](int kk) {
            const int c = k0 + kk;
            return (q_ok && c < Ci) ? x[(qn * Ci + c) * P + qp] : (real)0;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int rr = m0 + row, qq = q0 + col;
        if (rr >= R || qq >= N * P) return;
        const int o = rr / 4, a = (rr / 2) % 2, d = rr % 2;
        const int n = qq / P, i = (qq - n * P) / W, j = (qq - n * P) % W;
        y[((n * Co + o) * 2 * H + 2 * i + a) * 2 * W + 2 * j + d] = v + (has_bias ? b[o] : (real)0);
    };
    minunet_gemm_fma(load, store, 0, Ci);
}

// grid (ceil(N*H*W / MINUNET_GEMM_BN), ceil(Ci / MINUNET_GEMM_BM)), block MINUNET_GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
up_conv2x2_grad_input_v2(const real* gy, const real* w, real* gx, int N, int Ci, int H, int W, int Co) {
    const int P = H * W, R = 4 * Co;
    const int m0 = blockIdx.y * MINUNET_GEMM_BM, q0 = blockIdx.x * MINUNET_GEMM_BN;
    const minunet_stage_k_fastest<MINUNET_GEMM_BM> stage_a;      // A = w, w[c, r] read along r
    const minunet_stage_side_fastest<MINUNET_GEMM_BN> stage_b;   // B = G, gathered from gy along the pixels q
    const int q = q0 + stage_b.i;
    const bool q_ok = q < N * P;
    const int qn = q_ok ? q / P : 0, qp = q_ok ? q - qn * P : 0;
    const int qi = qp / W, qj = qp % W;
    const real* gy_n = gy + (long long)qn * Co * 4 * P;
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        stage_a(As, m0, [&](int c, int) {
            const int rr = k0 + stage_a.kk;
            return (c < Ci && rr < R) ? w[c * R + rr] : (real)0;
        });
        stage_b(Bs, [&](int kk) {
            const int rr = k0 + kk;
            real v = (real)0;
            if (q_ok && rr < R) {
                const int o = rr / 4, a = (rr / 2) % 2, d = rr % 2;
                v = gy_n[(o * 2 * H + 2 * qi + a) * 2 * W + 2 * qj + d];
            }
            return v;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int c = m0 + row, qq = q0 + col;
        if (c >= Ci || qq >= N * P) return;
        const int n = qq / P;
        gx[(n * Ci + c) * P + (qq - n * P)] = v;
    };
    minunet_gemm_fma(load, store, 0, R);
}

// grid (ceil(Co*4 / MINUNET_GEMM_BN), ceil(Ci / MINUNET_GEMM_BM), splits), block MINUNET_GEMM_THREADS;
// chunk a multiple of MINUNET_GEMM_BK.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
up_conv2x2_grad_weight_v2(const real* x, const real* gy, real* partial, int N, int Ci, int H, int W, int Co,
                          int chunk) {
    const int P = H * W, R = 4 * Co;
    const int r0 = blockIdx.x * MINUNET_GEMM_BN, m0 = blockIdx.y * MINUNET_GEMM_BM;
    const int k_begin = blockIdx.z * chunk, k_end = min(k_begin + chunk, N * P);
    const minunet_stage_k_fastest<MINUNET_GEMM_BM> stage_a;  // A = x and B = G, both read along the pixels q
    const minunet_stage_k_fastest<MINUNET_GEMM_BN> stage_b;
    int col_offset[stage_b.PASSES];  // this thread's columns r = (o, a, d) of G, as offsets into one image of gy
#pragma unroll
    for (int r = 0; r < stage_b.PASSES; r++) {
        const int rr = stage_b.at(r0, r);
        col_offset[r] = rr < R ? ((rr / 4) * 2 * H + (rr / 2) % 2) * 2 * W + rr % 2 : -1;
    }
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        const int q = k0 + stage_a.kk;
        const bool ok = q < k_end;
        const int n = ok ? q / P : 0, p = ok ? q - n * P : 0;
        const int pixel = 2 * (p / W) * 2 * W + 2 * (p % W);  // (2i, 2j) in an output plane
        minunet_stage_k_fastest_pair(
            stage_a, As, m0, [&](int c, int) { return (ok && c < Ci) ? x[(n * Ci + c) * P + p] : (real)0; },
            stage_b, Bs, r0, [&](int, int r) {
                return (ok && col_offset[r] >= 0) ? gy[(long long)n * R * P + col_offset[r] + pixel] : (real)0;
            });
    };
    auto store = [&](int row, int col, real v) {
        const int c = m0 + row, rr = r0 + col;
        if (c < Ci && rr < R) partial[((long long)blockIdx.z * Ci + c) * R + rr] = v;
    };
    minunet_gemm_fma(load, store, k_begin, k_end);
}
