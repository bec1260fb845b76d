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
//   conv1x1_grad_weight_v1: one block per (o, c) weight: threads stride over the N*P pixels, then a
//       shared-memory tree reduction. Deterministic, no atomics. Launch with CONV1X1_GW_THREADS threads.
//
// Launch configurations: minunet/backends/kernel_conv.py. Checked by `pytest tests/test_conv_ops.py`.
#include "common.cuh"

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
    partial[t] = acc;
    __syncthreads();
    for (int s = CONV1X1_GW_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) gw[blockIdx.x] = partial[0];
}
