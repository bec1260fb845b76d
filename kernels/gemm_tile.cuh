// gemm_tile.cuh: the register-blocked block tile and its loaders, shared by every GEMM version of
// conv3x3.cu, conv1x1.cu and up_conv2x2.cu (each op is a matrix product once its operands are viewed the
// right way). Python reads the MINUNET_GEMM_* #defines for the launches (minunet/ops/launch_table.py).
//
// C[BM x BN] = sum over k in [k_begin, k_end) of A[row, k] * B[k, col], on CUDA cores, by THREADS threads as a
// TY x TX grid, TX = 16 (a half-warp shares ty) and TY = THREADS / 16. load(As, Bs, k0) fills
// As[kk][row] = A[row, k0+kk] and Bs[kk][col] = B[k0+kk, col] with zeros outside the matrices, using the two
// stagers below; store(row, col, value) receives every element of the tile (rows and columns relative to
// it). Each thread keeps TM x TN = (BM/TY) x (BN/TX) outputs in registers:
//   rows ty*TM + i, contiguous, so that one 16-byte shared load fetches four of them (LDS.128; the threads of
//       a half-warp share ty, so it is a broadcast, free of bank conflicts);
//   columns tx + TX*j, interleaved, so that neighbouring threads read neighbouring shared words and write
//       neighbouring pixels (coalesced stores).
// Per step of the k loop, TM/4 + TN shared-load instructions (float) feed TM * TN multiply-adds: 5 for 16
// with the default 64 x 64 tile, 10 for 64 with 128 x 128. (With rows ty + 16i it was 8 and 16, and the
// multiply-adds' share of conv3x3's k loop on sm_80 went from 47% to 52% in v3, 64% to 68% in v4:
// `python -m minunet.sass` shows it, tests/test_sass.py holds the counts.) The slices of A and B are staged in
// shared memory BK deep; rows are padded by 8 words so that conv3x3.cu's TF32 fragment reads hit 32
// distinct banks, and 16-byte aligned for the row loads.
//
// Every count below is derived from BM, BN, BK and THREADS, and a static_assert stops the compile where a
// size does not fit (a tile the threads cannot cover in whole passes, rows that break the 16-byte loads).
#pragma once
#include "common.cuh"

#define MINUNET_GEMM_BM 64       // rows of the default block tile
#define MINUNET_GEMM_BN 64       // columns of the default block tile
#define MINUNET_GEMM_BK 16       // depth of the slice staged in shared memory per step
#define MINUNET_GEMM_PAD 8       // shared rows padded by 8 words
#define MINUNET_GEMM_THREADS 256 // threads per block (a 16 x 16 grid, or 8 warps)

// ---- The loader family: how the block's THREADS threads stage one BK-deep slice of an operand ----
// The staged array S is As (SIDE = BM: S[kk][row] = A[row, k0+kk]) or Bs (SIDE = BN: S[kk][col] = B[k0+kk, col]).
// Each thread fills SIDE * BK / THREADS of its elements, in one of two orders; element(...) returns one
// element of the operand with its own bounds check (zero outside the matrix: the padding, the partial tiles).
//
// k fastest: thread t takes depth kk = t % BK and positions first + STEP*p of the tile, first = t / BK,
//   STEP = THREADS/BK, p = 0 .. PASSES-1. Neighbouring threads read neighbouring k: an operand whose k is
//   contiguous in memory (w[m, k]), or both operands of a split-K weight gradient (k = the pixels).
//   element(i, p) gets the position in the matrix, i = at(origin, p) (origin: the tile's first row or column),
//   and p, to index per-thread tables; what depends on k0 + kk the caller computes once per slice.
template <int SIDE>
struct minunet_stage_k_fastest {
    static constexpr int STEP = MINUNET_GEMM_THREADS / MINUNET_GEMM_BK;  // positions filled per pass
    static constexpr int PASSES = SIDE / STEP;                           // elements per thread
    static_assert(MINUNET_GEMM_THREADS % MINUNET_GEMM_BK == 0, "the threads must cover whole columns of depth BK");
    static_assert(SIDE % STEP == 0, "the threads must cover the tile's side in whole passes");
    int kk, first;
    __device__ __forceinline__ minunet_stage_k_fastest()
        : kk(threadIdx.x % MINUNET_GEMM_BK), first(threadIdx.x / MINUNET_GEMM_BK) {}
    __device__ __forceinline__ int at(int origin, int p) const { return origin + first + STEP * p; }
    template <class Element>
    __device__ __forceinline__ void operator()(real (*S)[SIDE + MINUNET_GEMM_PAD], int origin, Element element) const {
#pragma unroll
        for (int p = 0; p < PASSES; p++) S[kk][first + STEP * p] = element(at(origin, p), p);
    }
};

// Two operands staged k fastest in one loop, pass by pass (A's p-th element, then B's): for split-K weight
// gradients, whose two operands share each pixel's address work (a thread has the same depth kk in both).
// (Two separate calls cost conv1x1's grad_weight 8 more registers on sm_90.)
template <int SA, int SB, class ElementA, class ElementB>
__device__ __forceinline__ void minunet_stage_k_fastest_pair(
        const minunet_stage_k_fastest<SA>& a, real (*As)[SA + MINUNET_GEMM_PAD], int a_origin, ElementA element_a,
        const minunet_stage_k_fastest<SB>& b, real (*Bs)[SB + MINUNET_GEMM_PAD], int b_origin, ElementB element_b) {
    constexpr int PA = minunet_stage_k_fastest<SA>::PASSES, PB = minunet_stage_k_fastest<SB>::PASSES;
#pragma unroll
    for (int p = 0; p < (PA > PB ? PA : PB); p++) {
        if (p < PA) As[a.kk][a.first + a.STEP * p] = element_a(a.at(a_origin, p), p);
        if (p < PB) Bs[b.kk][b.first + b.STEP * p] = element_b(b.at(b_origin, p), p);
    }
}

// side fastest: thread t takes position i = t % SIDE and depths kk = first + STEP*p, first = t / SIDE,
//   STEP = THREADS/SIDE, p = 0 .. PASSES-1. Neighbouring threads read neighbouring rows (columns): an operand
//   whose side is contiguous in memory (the pixels of x). element(kk); the caller computes what depends on
//   its fixed position i (a pixel's n, y, x) once, before the k loop.
template <int SIDE>
struct minunet_stage_side_fastest {
    static constexpr int STEP = MINUNET_GEMM_THREADS / SIDE;  // depths filled per pass
    static constexpr int PASSES = MINUNET_GEMM_BK / STEP;     // elements per thread
    static_assert(MINUNET_GEMM_THREADS % SIDE == 0, "the threads must cover whole rows of the tile's side");
    static_assert(MINUNET_GEMM_BK % STEP == 0, "the threads must cover the slice's depth in whole passes");
    int i, first;
    __device__ __forceinline__ minunet_stage_side_fastest() : i(threadIdx.x % SIDE), first(threadIdx.x / SIDE) {}
    template <class Element>
    __device__ __forceinline__ void operator()(real (*S)[SIDE + MINUNET_GEMM_PAD], Element element) const {
#pragma unroll
        for (int p = 0; p < PASSES; p++) S[first + STEP * p][i] = element(first + STEP * p);
    }
};

// ---- The block tile on CUDA cores ----
template <int BM = MINUNET_GEMM_BM, int BN = MINUNET_GEMM_BN, class Load, class Store>
__device__ __forceinline__ void minunet_gemm_fma(Load& load, Store& store, int k_begin, int k_end) {
    constexpr int TX = 16, TY = MINUNET_GEMM_THREADS / TX;  // the threads as a TY x TX grid
    constexpr int TM = BM / TY, TN = BN / TX;  // outputs per thread along each side
    static_assert(MINUNET_GEMM_THREADS % TX == 0 && BM % TY == 0 && BN % TX == 0, "the threads must tile BM x BN");
    static_assert((BM + MINUNET_GEMM_PAD) * sizeof(real) % 16 == 0, "16-byte row loads need 16-byte aligned rows");
    __shared__ __align__(16) real As[MINUNET_GEMM_BK][BM + MINUNET_GEMM_PAD];  // 16-byte row loads
    __shared__ real Bs[MINUNET_GEMM_BK][BN + MINUNET_GEMM_PAD];
    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
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
            for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx + TX * j];
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
        for (int j = 0; j < TN; j++) store(ty * TM + i, tx + TX * j, acc[i][j]);
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
