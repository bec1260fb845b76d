// softmax_cross_entropy.cu: the U-Net loss, pixel-wise softmax over K classes + weighted cross-entropy,
// fused with its gradient in one pass.
//
// For each pixel (n, y, x) with label l and weight wt (1 when no weights are given):
//   p_k    = exp(z_k - m) / sum_j exp(z_j - m),   m = max_j z_j   (the max-subtract keeps exp from overflowing)
//   loss   = wt * (log(sum_j exp(z_j - m)) - (z_l - m))        (= wt * -log p_l, without log of a tiny p)
//   grad_k = scale * wt * (p_k - [k == l])                     (written for all K classes)
// Pixels whose label equals ignore_index add 0 to the loss and get a zero gradient (ignore_index == -1:
// none is ignored, since labels are >= 0). Labels are validated on the host: 0 <= l < K or l == ignore_index.
// The loss total is reduced in two stages: each block sums its pixels' losses in shared memory and writes
// one partial sum; the host adds the partial sums (a handful of numbers).
//
// Kernel versions:
//   softmax_cross_entropy_v1: one thread per pixel, looping over the K classes (stride H*W in memory, but
//       neighbouring threads read neighbouring pixels, so each read is coalesced across the warp).
//       Three passes over the K logits (max, sum of exp, gradient) instead of a local array, since K is
//       only known at run time. Block loss via common.cuh's shared-memory tree reduction, minunet_block_sum.
//       The loss is accumulated in double even when real is float: a U-Net batch has ~10^5-10^6 pixels, and
//       a float sum of that many terms loses digits (about 5e-6 relative for 10^6 terms in order; a worst
//       case grows with the count) and its result depends on the block count; double partial sums keep the
//       total as exact as the per-pixel float losses themselves (tutorials/06 measures it).
//
// grid (ceil(N*H*W / MINUNET_THREADS)), block MINUNET_THREADS, dynamic shared memory MINUNET_THREADS doubles.
// Launched by its launcher, the function of the same name in minunet/ops/softmax_cross_entropy.py, which
// writes that block, grid and shared memory (MINUNET_THREADS read once through minunet/ops/launching.py).
// Checked by tests/test_softmax_cross_entropy.py: against the NumPy reference (with and without weights and ignored
// pixels), on the sim and cuda devices, in float and double.
#include "common.cuh"

// exp and log of the element type (CUDA's float overloads are not guaranteed in every compiler we use).
__device__ __forceinline__ float real_exp(float v) { return expf(v); }
__device__ __forceinline__ double real_exp(double v) { return exp(v); }
__device__ __forceinline__ float real_log(float v) { return logf(v); }
__device__ __forceinline__ double real_log(double v) { return log(v); }

extern "C" __global__ void softmax_cross_entropy_v1(const real* logits, const int* labels, const real* weights,
                                                    int has_weights, int ignore_index, real scale,
                                                    int N, int K, int HW, real* grad, double* block_loss) {
    extern __shared__ double sce_loss_cache[];  // MINUNET_THREADS doubles
    int pixel = blockIdx.x * blockDim.x + threadIdx.x;  // n*HW + s
    double loss = 0.0;
    // no early return: every thread of the block must reach the barriers of minunet_block_sum below
    if (pixel < N * HW) {
        int n = pixel / HW, s = pixel % HW;
        const real* z = logits + n * K * HW + s;  // class k at z[k*HW]
        real* g = grad + n * K * HW + s;
        int label = labels[pixel];
        if (label == ignore_index) {
            for (int k = 0; k < K; k++) g[k * HW] = (real)0;
        } else {
            real m = z[0];
            for (int k = 1; k < K; k++) m = z[k * HW] > m ? z[k * HW] : m;
            real sum = 0;
            for (int k = 0; k < K; k++) sum += real_exp(z[k * HW] - m);
            real wt = has_weights ? weights[pixel] : (real)1;
            loss = (double)wt * ((double)real_log(sum) - (double)(z[label * HW] - m));
            real gscale = scale * wt;
            for (int k = 0; k < K; k++) {
                real p = real_exp(z[k * HW] - m) / sum;
                g[k * HW] = gscale * (p - (k == label ? (real)1 : (real)0));
            }
        }
    }
    minunet_block_sum<MINUNET_THREADS>(sce_loss_cache, loss, threadIdx.x);  // the tree of chapter 2
    if (threadIdx.x == 0) block_loss[blockIdx.x] = sce_loss_cache[0];
}
