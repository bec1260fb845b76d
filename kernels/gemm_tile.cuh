// gemm_tile.cuh: the register-blocked block tile and its loaders, shared by every GEMM version of
// conv3x3.cu, conv1x1.cu and up_conv2x2.cu (each op is a matrix product once its operands are viewed the
// right way), and the same block tile on TF32 tensor cores (conv3x3.cu's v5). The launchers (in
// minunet/ops/<op>.py, named as the kernels) read the MINUNET_GEMM_* #defines once through
// minunet/ops/launching.py.
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
// shared memory BK deep; rows are padded by 8 words so that the TF32 tile's fragment reads hit 32
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

// ---- The block tile on TF32 tensor cores (float32 only, sm_80 or newer) ----
// One warp-wide mma.sync.m16n8k8 computes D[16 x 8] += A[16 x 8] * B[8 x 8].
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32), lane = 4*g + t:
//   a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4];  b[0] = B[t][g], b[1] = B[t+4][g];
//   d[0] = D[g][2t], d[1] = D[g][2t+1], d[2] = D[g+8][2t], d[3] = D[g+8][2t+1].

// float -> TF32 (10 mantissa bits), rounded to nearest with ties away from zero, as cvt.rna.tf32.f32.
__device__ __forceinline__ unsigned int minunet_to_tf32(float v) {
#if defined(MINUNET_SIM)
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;  // finite: add half a TF32 unit, then truncate
    return u & 0xffffe000u;
#elif __CUDA_ARCH__ >= 800
    unsigned int u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(v));
    return u;
#else
    return __float_as_uint(v);  // sm_75 has no TF32; minunet_mma_tf32 traps, and Python never launches it
#endif
}

__device__ __forceinline__ void minunet_mma_tf32(float d[4], const unsigned int a[4], const unsigned int b[2]) {
#if defined(MINUNET_SIM)
    // The simulator has no tensor cores: each warp lays its fragments out as matrices in shared scratch
    // (per the layout above), multiplies them, and reads its own 4 outputs. Same fragments in, same out.
    __shared__ float sa[MINUNET_GEMM_THREADS / 32][16][8];
    __shared__ float sb[MINUNET_GEMM_THREADS / 32][8][8];
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    sa[warp][g][t] = __uint_as_float(a[0]);
    sa[warp][g + 8][t] = __uint_as_float(a[1]);
    sa[warp][g][t + 4] = __uint_as_float(a[2]);
    sa[warp][g + 8][t + 4] = __uint_as_float(a[3]);
    sb[warp][t][g] = __uint_as_float(b[0]);
    sb[warp][t + 4][g] = __uint_as_float(b[1]);
    __syncwarp();
    for (int r = 0; r < 4; r++) {
        int row = g + 8 * (r / 2), col = 2 * t + r % 2;
        float sum = 0.0f;  // products of TF32 numbers are exact in float
        for (int k = 0; k < 8; k++) sum += sa[warp][row][k] * sb[warp][k][col];
        d[r] += sum;
    }
    __syncwarp();  // before the next call overwrites the scratch
#elif __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();  // no TF32 tensor cores before sm_80
#endif
}

// The block tile of minunet_gemm_fma on tensor cores: the same slices (staged by the caller's load, built on
// the stagers above), the same store. The THREADS/32 warps form a (BM/32) x (BN/16) grid, warp w owning
// rows 32*(w % (BM/32)) .. +31 and columns 16*(w / (BM/32)) .. +15, i.e. 2 x 2 mma tiles; each BK-deep slice
// is BK/8 k-steps of 8. Its k loop repeats minunet_gemm_fma's: a shared loop taking the multiply as a lambda
// cost up to 4 registers in some kernels (NVRTC), so each keeps its own.
template <int BM, int BN, class Load, class Store>
__device__ __forceinline__ void minunet_gemm_tf32(Load& load, Store& store, int k_begin, int k_end) {
    constexpr int WM = 32, WN = 16, WARPS_M = BM / WM;  // a warp's piece of the tile, and the warps along BM
    constexpr int MI = WM / 16, NJ = WN / 8;            // its mma tiles (16 x 8) along each side
    static_assert(BM % WM == 0 && BN % WN == 0 && (BM / WM) * (BN / WN) == MINUNET_GEMM_THREADS / 32,
                  "the warps must cover the block tile, one 32 x 16 piece each");
    static_assert(MINUNET_GEMM_BK % 8 == 0, "mma.m16n8k8 takes k-steps of 8");
    __shared__ real As[MINUNET_GEMM_BK][BM + MINUNET_GEMM_PAD];
    __shared__ real Bs[MINUNET_GEMM_BK][BN + MINUNET_GEMM_PAD];
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const int wm = WM * (warp % WARPS_M), wn = WN * (warp / WARPS_M);
    float acc[MI][NJ][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;
    for (int k0 = k_begin; k0 < k_end; k0 += MINUNET_GEMM_BK) {
        load(As, Bs, k0);
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < MINUNET_GEMM_BK; ks += 8) {
            unsigned int a[MI][4], b[NJ][2];
#pragma unroll
            for (int i = 0; i < MI; i++) {
                int row = wm + 16 * i + g;
                a[i][0] = minunet_to_tf32((float)As[ks + t][row]);
                a[i][1] = minunet_to_tf32((float)As[ks + t][row + 8]);
                a[i][2] = minunet_to_tf32((float)As[ks + t + 4][row]);
                a[i][3] = minunet_to_tf32((float)As[ks + t + 4][row + 8]);
            }
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                int col = wn + 8 * j + g;
                b[j][0] = minunet_to_tf32((float)Bs[ks + t][col]);
                b[j][1] = minunet_to_tf32((float)Bs[ks + t + 4][col]);
            }
#pragma unroll
            for (int i = 0; i < MI; i++)
#pragma unroll
                for (int j = 0; j < NJ; j++) minunet_mma_tf32(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                store(wm + 16 * i + g + 8 * (r / 2), wn + 8 * j + 2 * t + r % 2, (real)acc[i][j][r]);
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
