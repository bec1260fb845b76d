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
//       N*H*W input pixels keeping 4 partial sums, then a shared-memory tree reduction (deterministic).
//       Launch with exactly UP_CONV2X2_GW_THREADS threads per block.
//
// Launch configurations: minunet/backends/kernel_conv.py. Checked by `pytest tests/test_conv_ops.py`.
#include "common.cuh"

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
    for (int k = 0; k < 4; k++) partial[k][t] = acc[k];
    __syncthreads();
    for (int s = UP_CONV2X2_GW_THREADS / 2; s > 0; s >>= 1) {
        if (t < s)
            for (int k = 0; k < 4; k++) partial[k][t] += partial[k][t + s];
        __syncthreads();
    }
    if (t < 4) gw[blockIdx.x * 4 + t] = partial[t][0];
}
