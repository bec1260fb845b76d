// max_pool2x2.cu: 2x2 max pooling with stride 2 (U-Net's down-sampling), forward and backward.
//
// forward:  x (N, C, H, W), H and W even -> y (N, C, H/2, W/2) and argmax (uint8, same shape),
//           argmax = 2*dy + dx of the window element that won, so the backward needs no search.
//           Ties go to the lowest index (the first of the window in row-major order).
//           NaN propagates: a window holding a NaN outputs NaN, and argmax points at its first NaN
//           (as PyTorch, and as NumPy's argmax, which the numpy path in minunet/ops/max_pool2x2.py uses).
// backward: gy (N, C, H/2, W/2), argmax -> gx (N, C, H, W): gy where the element was the argmax, 0 elsewhere.
//
// Kernel versions:
//   max_pool2x2_forward_v1: one thread per OUTPUT element reads its 2x2 window. Reads and writes are
//       coalesced enough (neighbouring threads read neighbouring windows); the op is memory-bound anyway.
//   max_pool2x2_backward_v1: one thread per INPUT element gathers gy of its window if it is the argmax.
//       A gather rather than a scatter: every element of gx is written exactly once (no zero-fill pass,
//       no atomics, nothing left unwritten).
//
// Each kernel is launched by its launcher, the function of the same name in minunet/ops/max_pool2x2.py, which
// writes its block (MINUNET_THREADS, read once through minunet/ops/launching.py) and grid. Checked by
// tests/test_max_pool2x2.py against the NumPy reference on the sim (and cuda) devices, with tie-free inputs
// (a shuffled arange) plus an explicit test of the tie and NaN rules.
#include "common.cuh"

extern "C" __global__ void max_pool2x2_forward_v1(const real* x, real* y, unsigned char* argmax,
                                                  int N, int C, int H, int W) {
    int h = H / 2, w = W / 2;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into y: ((n*C + c)*h + oy)*w + ox
    if (i >= N * C * h * w) return;
    int ox = i % w;
    int oy = (i / w) % h;
    int nc = i / (w * h);
    const real* window = x + (nc * H + 2 * oy) * W + 2 * ox;
    real best = window[0];
    int best_k = 0;
    for (int k = 1; k < 4; k++) {
        real v = window[(k >> 1) * W + (k & 1)];
        // strictly greater keeps the lowest index on ties; v != v is NaN, taken only if best is not NaN yet
        if (v > best || (v != v && best == best)) {
            best = v;
            best_k = k;
        }
    }
    y[i] = best;
    argmax[i] = (unsigned char)best_k;
}

extern "C" __global__ void max_pool2x2_backward_v1(const real* gy, const unsigned char* argmax, real* gx,
                                                   int N, int C, int H, int W) {
    int h = H / 2, w = W / 2;
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx: ((n*C + c)*H + iy)*W + ix
    if (i >= N * C * H * W) return;
    int ix = i % W;
    int iy = (i / W) % H;
    int nc = i / (W * H);
    int o = (nc * h + iy / 2) * w + ix / 2;  // the window this element belongs to
    int k = 2 * (iy & 1) + (ix & 1);         // its position in the window
    gx[i] = (argmax[o] == k) ? gy[o] : (real)0;
}
