// conv1x1.cu: 1x1 convolution (U-Net's last layer: features -> class scores), a per-pixel matrix product.
//
// With P = H*W pixels per image:
// forward:     x (N, Ci, H, W), w (Co, Ci, 1, 1), b (Co,) -> y (N, Co, H, W),
//              y[n,o,p] = b[o] + sum_c w[o,c] * x[n,c,p]. No bias: has_bias = 0 (b is never read).
// grad_input:  gy (N, Co, H, W), w -> gx (N, Ci, H, W), gx[n,c,p] = sum_o w[o,c] * gy[n,o,p].
// grad_weight: x, gy -> gw (Co, Ci, 1, 1), gw[o,c] = sum_{n,p} gy[n,o,p] * x[n,c,p].
//
// Kernel versions:
//   conv1x1_forward_v1: one thread per OUTPUT element, a loop over Ci. Neighbouring threads read
//       neighbouring pixels, so the reads of x are coalesced; w[o,:] is the same for a whole row of threads.
//   conv1x1_grad_input_v1: one thread per INPUT element, a loop over Co (the transpose of the forward).
//   conv1x1_grad_weight_v1: one block per (o, c) weight: threads stride over the N*P pixels, then the
//       shared-memory tree reduction of common.cuh (minunet_block_sum). Deterministic, no atomics. Launch
//       with CONV1X1_GW_THREADS threads.
//   The GEMM versions (v2): the op is a matrix product, so each is minunet_gemm_fma, the register-blocked
//   64 x 64 block tile of gemm_tile.cuh, whose stagers fill the slices through each kernel's element lambdas:
//   conv1x1_forward_v2: y[o, q] = sum_c w[o, c] x[c, q] over the pixels q of all N images; bias in the
//       epilogue. Each x value is read once per 64 output channels (v1: once per output channel). Not the
//       default: the U-Net's 1x1 layer has Co = 2, which leaves 62 of the tile's 64 rows empty.
//   conv1x1_grad_input_v2: gx[c, q] = sum_o w[o, c] gy[o, q]. Not the default for the same reason (K = Co = 2).
//   conv1x1_grad_weight_v2: gw[o, c] = sum_q gy[o, q] x[c, q], split-K over the N*P pixels: block z writes
//       the slice's partial product, gemm_split_k_reduce (gemm_tile.cuh) adds the slices in order
//       (deterministic).
//       Reads x and gy once per 64 channels; v1 reads x Co times and gy Ci times (one block per weight).
//
// Each kernel is launched by its launcher, the function of the same name in minunet/ops/conv1x1.py, which
// writes its block, grid and shared memory; the tile sizes are the #defines here and in gemm_tile.cuh, read
// once through minunet/ops/launching.py. Checked by `pytest tests/test_conv1x1.py`.
#include "common.cuh"
#include "gemm_tile.cuh"  // minunet_gemm_fma, the MINUNET_GEMM_* tile sizes, gemm_split_k_reduce

#define CONV1X1_GW_THREADS 256  // grad_weight v1: threads per block, a power of two for the tree reduction

extern "C" __global__ void conv1x1_forward_v1(const real* x, const real* w, const real* b, real* y,
                                              int N, int Ci, int P, int Co, int has_bias) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into y: (n*Co + o)*P + p
    if (i >= N * Co * P) return;
    int p = i % P;
    int o = (i / P) % Co;
    int n = i / (P * Co);
    const real* xn = x + n * Ci * P + p;
    const real* wo = w + o * Ci;
    real sum = has_bias ? b[o] : (real)0;
    for (int c = 0; c < Ci; c++) sum += wo[c] * xn[c * P];
    y[i] = sum;
}

extern "C" __global__ void conv1x1_grad_input_v1(const real* gy, const real* w, real* gx,
                                                 int N, int Ci, int P, int Co) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx: (n*Ci + c)*P + p
    if (i >= N * Ci * P) return;
    int p = i % P;
    int c = (i / P) % Ci;
    int n = i / (P * Ci);
    const real* gyn = gy + n * Co * P + p;
    real sum = (real)0;
    for (int o = 0; o < Co; o++) sum += w[o * Ci + c] * gyn[o * P];
    gx[i] = sum;
}

// grid = (Co * Ci, 1, 1), block = (CONV1X1_GW_THREADS, 1, 1).
extern "C" __global__ void conv1x1_grad_weight_v1(const real* x, const real* gy, real* gw,
                                                  int N, int Ci, int P, int Co) {
    __shared__ real partial[CONV1X1_GW_THREADS];
    int o = blockIdx.x / Ci, c = blockIdx.x % Ci;
    int t = threadIdx.x;
    real acc = (real)0;
    for (int q = t; q < N * P; q += CONV1X1_GW_THREADS) {
        int p = q % P, n = q / P;
        acc += gy[(n * Co + o) * P + p] * x[(n * Ci + c) * P + p];
    }
    minunet_block_sum(partial, acc, t);  // common.cuh: the tree of chapter 2
    if (t == 0) gw[blockIdx.x] = partial[0];
}

// ================================================================ the GEMM versions

// The block tile is minunet_gemm_fma of gemm_tile.cuh (shared with conv3x3.cu and up_conv2x2.cu).

// grid (ceil(N*P / MINUNET_GEMM_BN), ceil(Co / MINUNET_GEMM_BM)), block MINUNET_GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv1x1_forward_v2(const real* x, const real* w, const real* b, real* y, int N, int Ci, int P, int Co, int has_bias) {
    const int m0 = blockIdx.y * MINUNET_GEMM_BM, q0 = blockIdx.x * MINUNET_GEMM_BN;
    const minunet_stage_k_fastest<MINUNET_GEMM_BM> stage_a;      // A = w, read along c
    const minunet_stage_side_fastest<MINUNET_GEMM_BN> stage_b;   // B = x, read along the pixels q
    const int q = q0 + stage_b.i;
    const bool q_ok = q < N * P;
    const int qn = q_ok ? q / P : 0, qp = q_ok ? q - qn * P : 0;
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        stage_a(As, m0, [&](int m, int) {
            const int c = k0 + stage_a.kk;
            return (m < Co && c < Ci) ? w[m * Ci + c] : (real)0;
        });
        stage_b(Bs, [&](int kk) {
            const int c = k0 + kk;
            return (q_ok && c < Ci) ? x[(qn * Ci + c) * P + qp] : (real)0;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int m = m0 + row, qq = q0 + col;
        if (m >= Co || qq >= N * P) return;
        const int n = qq / P;
        y[(n * Co + m) * P + (qq - n * P)] = v + (has_bias ? b[m] : (real)0);
    };
    minunet_gemm_fma(load, store, 0, Ci);
}

// grid (ceil(N*P / MINUNET_GEMM_BN), ceil(Ci / MINUNET_GEMM_BM)), block MINUNET_GEMM_THREADS.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv1x1_grad_input_v2(const real* gy, const real* w, real* gx, int N, int Ci, int P, int Co) {
    const int m0 = blockIdx.y * MINUNET_GEMM_BM, q0 = blockIdx.x * MINUNET_GEMM_BN;
    const minunet_stage_side_fastest<MINUNET_GEMM_BM> stage_a;   // A = w^T, read along c
    const minunet_stage_side_fastest<MINUNET_GEMM_BN> stage_b;   // B = gy, read along the pixels q
    const int q = q0 + stage_b.i;
    const bool q_ok = q < N * P;
    const int qn = q_ok ? q / P : 0, qp = q_ok ? q - qn * P : 0;
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        stage_a(As, [&](int kk) {
            const int o = k0 + kk, c = m0 + stage_a.i;
            return (c < Ci && o < Co) ? w[o * Ci + c] : (real)0;
        });
        stage_b(Bs, [&](int kk) {
            const int o = k0 + kk;
            return (q_ok && o < Co) ? gy[(qn * Co + o) * P + qp] : (real)0;
        });
    };
    auto store = [&](int row, int col, real v) {
        const int c = m0 + row, qq = q0 + col;
        if (c >= Ci || qq >= N * P) return;
        const int n = qq / P;
        gx[(n * Ci + c) * P + (qq - n * P)] = v;
    };
    minunet_gemm_fma(load, store, 0, Co);
}

// grid (ceil(Ci / MINUNET_GEMM_BN), ceil(Co / MINUNET_GEMM_BM), splits), block MINUNET_GEMM_THREADS;
// chunk a multiple of MINUNET_GEMM_BK.
extern "C" __global__ void __launch_bounds__(MINUNET_GEMM_THREADS)
conv1x1_grad_weight_v2(const real* x, const real* gy, real* partial, int N, int Ci, int P, int Co, int chunk) {
    const int c0 = blockIdx.x * MINUNET_GEMM_BN, m0 = blockIdx.y * MINUNET_GEMM_BM;
    const int k_begin = blockIdx.z * chunk, k_end = min(k_begin + chunk, N * P);
    const minunet_stage_k_fastest<MINUNET_GEMM_BM> stage_a;  // A = gy and B = x^T, both read along the pixels q
    const minunet_stage_k_fastest<MINUNET_GEMM_BN> stage_b;
    auto load = [&](real (*As)[MINUNET_GEMM_BM + MINUNET_GEMM_PAD], real (*Bs)[MINUNET_GEMM_BN + MINUNET_GEMM_PAD], int k0) {
        const int q = k0 + stage_a.kk;
        const bool ok = q < k_end;
        const int n = ok ? q / P : 0, p = ok ? q - n * P : 0;
        minunet_stage_k_fastest_pair(
            stage_a, As, m0, [&](int o, int) { return (ok && o < Co) ? gy[(n * Co + o) * P + p] : (real)0; },
            stage_b, Bs, c0, [&](int c, int) { return (ok && c < Ci) ? x[(n * Ci + c) * P + p] : (real)0; });
    };
    auto store = [&](int row, int col, real v) {
        const int o = m0 + row, c = c0 + col;
        if (o < Co && c < Ci) partial[((long long)blockIdx.z * Co + o) * Ci + c] = v;
    };
    minunet_gemm_fma(load, store, k_begin, k_end);
}
