// gemm_tile.cuh: the register-blocked block tile shared by the GEMM versions of conv3x3.cu, conv1x1.cu
// and up_conv2x2.cu (each op is a matrix product once its operands are viewed the right way).
//
// C[BM x BN] = sum over k in [k_begin, k_end) of A[row, k] * B[k, col], on CUDA cores, by 256 threads as a
// 16 x 16 grid. load(As, Bs, k0) fills As[kk][row] = A[row, k0+kk] and Bs[kk][col] = B[k0+kk, col] with
// zeros outside the matrices; store(row, col, value) receives every element of the tile (rows and columns
// relative to it). Each thread keeps TM x TN = (BM/16) x (BN/16) outputs in registers:
//   rows ty*TM + i, contiguous, so that one 16-byte shared load fetches four of them (LDS.128; the threads of
//       a half-warp share ty, so it is a broadcast, free of bank conflicts);
//   columns tx + 16j, interleaved, so that neighbouring threads read neighbouring shared words and write
//       neighbouring pixels (coalesced stores).
// Per step of the k loop, TM/4 + TN shared-load instructions (float) feed TM * TN multiply-adds: 5 for 16
// with the default 64 x 64 tile, 10 for 64 with 128 x 128. (With rows ty + 16i it was 8 and 16, and the
// multiply-adds' share of conv3x3's k loop on sm_80 went from 47% to 52% in v3, 64% to 68% in v4:
// `python -m minunet.sass` shows it, tests/test_sass.py holds the counts.) The slices of A and B are staged in
// shared memory BK deep; rows are padded by 8 words so that conv3x3.cu's TF32 fragment reads hit 32
// distinct banks, and 16-byte aligned for the row loads.
#pragma once
#include "common.cuh"

#define MINUNET_GEMM_BM 64       // rows of the default block tile
#define MINUNET_GEMM_BN 64       // columns of the default block tile
#define MINUNET_GEMM_BK 16       // depth of the slice staged in shared memory per step
#define MINUNET_GEMM_PAD 8       // shared rows padded by 8 words
#define MINUNET_GEMM_THREADS 256 // threads per block (16 x 16, or 8 warps)

template <int BM = MINUNET_GEMM_BM, int BN = MINUNET_GEMM_BN, class Load, class Store>
__device__ __forceinline__ void minunet_gemm_fma(Load& load, Store& store, int k_begin, int k_end) {
    constexpr int TM = BM / 16, TN = BN / 16;  // outputs per thread along each side
    __shared__ __align__(16) real As[MINUNET_GEMM_BK][BM + MINUNET_GEMM_PAD];  // 16-byte row loads
    __shared__ real Bs[MINUNET_GEMM_BK][BN + MINUNET_GEMM_PAD];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    real acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = (real)0;
    for (int k0 = k_begin; k0 < k_end; k0 += MINUNET_GEMM_BK) {
        load(As, Bs, k0);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MINUNET_GEMM_BK; kk++) {
            real a[TM], b[TN];  // TM/4 + TN shared-load instructions feed TM * TN multiply-adds
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = As[kk][ty * TM + i];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();  // before the next slice overwrites the tiles
    }
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) store(ty * TM + i, tx + 16 * j, acc[i][j]);
}

// The second step of the split-K weight gradients of conv3x3.cu, conv1x1.cu and up_conv2x2.cu, whose GEMM
// kernel's block z wrote the partial product of pixel slice z to partial[z]:
// gw[i] = sum over z = 0, 1, ... of partial[z][i], in that order (deterministic); one thread per element.
extern "C" __global__ void gemm_split_k_reduce(const real* partial, real* gw, int count, int splits) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    real sum = (real)0;
    for (int z = 0; z < splits; z++) sum += partial[(long long)z * count + i];
    gw[i] = sum;
}
