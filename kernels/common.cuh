// common.cuh: what every minunet kernel file includes.
//
// The element type is chosen when the file is compiled: -DMINUNET_REAL=float or -DMINUNET_REAL=double.
// (A prefixed name on purpose: NVRTC's built-in headers break on one-letter macros such as -DT=double.)
// The same source is compiled by NVRTC for the GPU and by minunet's simulator for the CPU, so it may use
// only CUDA built-ins and what is defined here: no #include of the C++ standard library.
#pragma once

#ifndef MINUNET_REAL
#define MINUNET_REAL float
#endif
typedef MINUNET_REAL real;

#define MINUNET_THREADS 256  // threads per block of the one-thread-per-element kernels and of the block reductions
                             // (read by the launchers through minunet/ops/launching.py; a power of two, as the
                             // reductions need)

// A counter-based random number: the same (seed, index) gives the same number on every device and in
// NumPy (dropout's numpy path, minunet/ops/elementwise.py, reproduces it bit for bit), so dropout masks agree
// across devices.
// It is the "lowbias32" integer hash (Chris Wellons), applied to index mixed with the seed.
__device__ __forceinline__ unsigned int minunet_hash(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

// Uniform in [0, 1) with 24 random bits, exact in float and double.
__device__ __forceinline__ float minunet_hash_uniform(unsigned int seed, unsigned int index) {
    unsigned int h = minunet_hash(index ^ minunet_hash(seed));
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

// The block reduction of every kernel that sums over a block (bias_grad_v1, softmax_cross_entropy_v1, the
// grad_weight v1/v2 kernels), for any element type T. Each of the block's THREADS threads holds K partial
// sums acc[0..K); a shared-memory tree adds them up, halving the active threads each step, so the order of
// additions is fixed (deterministic, no atomics). On return, after a barrier, partial[k][0] holds the block's
// sum of acc[k]. Every thread must call it (no early return before it), with t = its index in 0..THREADS (a
// power of two). threads is THREADS, given at run time by the dynamic-buffer form below (blockDim.x): NVRTC
// then keeps the loop, which costs bias_grad_v1 and the loss kernel fewer registers than the unrolled one.
// Writing it is the exercise of chapter 2 (python -m minunet.exercises start block_sum).
template <class T, int K, int THREADS>
__device__ __forceinline__ void minunet_block_sum(T (*partial)[THREADS], const T (&acc)[K], int t,
                                                  unsigned threads = THREADS) {
    static_assert(THREADS > 0 && (THREADS & (THREADS - 1)) == 0, "the tree halves THREADS: a power of two");
    for (int k = 0; k < K; k++) partial[k][t] = acc[k];
    __syncthreads();
    for (unsigned s = threads / 2; s > 0; s >>= 1) {
        if ((unsigned)t < s)
            for (int k = 0; k < K; k++) partial[k][t] += partial[k][t + s];
        __syncthreads();
    }
}

// One sum per thread: on return partial[0] holds the block's sum (the same tree, K = 1).
template <class T, int THREADS>
__device__ __forceinline__ void minunet_block_sum(T (&partial)[THREADS], T acc, int t) {
    const T one[1] = {acc};
    minunet_block_sum(&partial, one, t);
}

// One sum per thread in a dynamic buffer, an extern __shared__ array of THREADS elements (the launch's dynamic
// shared memory) in a block of THREADS threads: on return partial[0] holds the block's sum.
// Called as minunet_block_sum<THREADS>(buffer, acc, threadIdx.x).
template <int THREADS, class T>
__device__ __forceinline__ void minunet_block_sum(T* partial, T acc, int t) {
    const T one[1] = {acc};
    minunet_block_sum(reinterpret_cast<T (*)[THREADS]>(partial), one, t, blockDim.x);
}
