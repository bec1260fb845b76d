// Block b reads what block b - 1 wrote in the same launch. Blocks run in any order on a GPU, at the same time,
// and nothing orders one block before another within a launch: the value may not be there yet.
#include "common.cuh"

extern "C" __global__ void prefix_of_blocks(const real* x, real* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    real before = blockIdx.x > 0 ? out[i - blockDim.x] : (real)0;  // the bug: the previous block's output
    out[i] = before + x[i];
}
