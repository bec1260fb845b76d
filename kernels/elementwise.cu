// elementwise.cu: the small memory-bound ops of U-Net: relu, crop and concat (as window copies),
// dropout, and the bias gradient (a per-channel sum).
//
// relu_forward:  y = x < 0 ? 0 : x               (NaN propagates, as in PyTorch)
// relu_backward: gx = y > 0 ? gy : 0
// copy_window:   dst[n, dc0+c, dy0+i, dx0+j] = src[n, sc0+c, sy0+i, sx0+j] for a (N, C, h, w) window;
//                crop is a window of x, crop_grad a window of a zero-filled gx (fill), concat copies a and
//                b into channel ranges of y, concat_grad copies channel ranges of gy out.
// fill:          y = value (the zeros around crop_grad's window are written by a kernel, so the simulator's
//                NaN poisoning of outputs checks them too).
// dropout_forward: mask = minunet_hash_uniform(seed, offset + i) >= p ? scale : 0 with scale = 1/(1-p),
//                y = x*mask, where i is the flat element index: the same elements are dropped on every device
//                and in NumPy. offset places x inside a larger batch (a data-parallel process's share), so
//                the process drops what one process holding the whole batch would.
// multiply:      out = a*b (dropout's backward: gx = gy*mask).
// bias_grad:     gb[c] = sum over n, y, x of gy[n, c, y, x].
//
// Kernel versions (all v1: one readable version each):
//   relu_forward_v1, relu_backward_v1, fill_v1, multiply_v1, dropout_forward_v1: one thread per element.
//   copy_window_v1: one thread per element of the window; consecutive threads copy consecutive columns.
//   bias_grad_v1: one block per channel; its threads stride over the N*H*W elements (so reads are
//       coalesced), then common.cuh's shared-memory tree reduction, minunet_block_sum. Deterministic: the
//       same summation order on every run, no atomics. grid (C), block MINUNET_THREADS, dynamic shared
//       memory MINUNET_THREADS reals.
//
// Each kernel is launched by its launcher, the function of the same name in minunet/ops/elementwise.py, which
// writes its block, grid and shared memory (the one-thread-per-element kernels: blocks of MINUNET_THREADS,
// read once through minunet/ops/launching.py). Checked by tests/test_elementwise.py against the
// NumPy reference on the sim and cuda devices, in float and double; dropout masks must match NumPy bit
// for bit.
#include "common.cuh"

extern "C" __global__ void relu_forward_v1(const real* x, real* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] < (real)0 ? (real)0 : x[i];
}

extern "C" __global__ void relu_backward_v1(const real* gy, const real* y, real* gx, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) gx[i] = y[i] > (real)0 ? gy[i] : (real)0;
}

extern "C" __global__ void fill_v1(real* y, real value, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = value;
}

extern "C" __global__ void multiply_v1(const real* a, const real* b, real* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] * b[i];
}

extern "C" __global__ void copy_window_v1(const real* src, int src_C, int src_H, int src_W,
                                          int src_c0, int src_y0, int src_x0,
                                          real* dst, int dst_C, int dst_H, int dst_W,
                                          int dst_c0, int dst_y0, int dst_x0,
                                          int N, int C, int h, int w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into the (N, C, h, w) window
    if (i >= N * C * h * w) return;
    int x = i % w;
    int y = (i / w) % h;
    int c = (i / (w * h)) % C;
    int n = i / (w * h * C);
    int s = ((n * src_C + src_c0 + c) * src_H + src_y0 + y) * src_W + src_x0 + x;
    int d = ((n * dst_C + dst_c0 + c) * dst_H + dst_y0 + y) * dst_W + dst_x0 + x;
    dst[d] = src[s];
}

extern "C" __global__ void dropout_forward_v1(const real* x, real* y, real* mask, int n,
                                              unsigned int seed, unsigned int offset, float p, real scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    // the comparison is in float on every device (NumPy compares float32 too), so masks agree bit for bit
    real m = minunet_hash_uniform(seed, offset + (unsigned int)i) >= p ? scale : (real)0;
    mask[i] = m;
    y[i] = x[i] * m;
}

extern "C" __global__ void bias_grad_v1(const real* gy, real* gb, int N, int C, int HW) {
    extern __shared__ real bias_grad_cache[];  // MINUNET_THREADS reals
    int c = blockIdx.x;
    real sum = 0;
    for (int i = threadIdx.x; i < N * HW; i += blockDim.x) {
        int n = i / HW, s = i % HW;
        sum += gy[(n * C + c) * HW + s];
    }
    minunet_block_sum<MINUNET_THREADS>(bias_grad_cache, sum, threadIdx.x);  // the tree of chapter 2
    if (threadIdx.x == 0) gb[c] = bias_grad_cache[0];
}
