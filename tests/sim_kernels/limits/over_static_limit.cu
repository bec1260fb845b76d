// 52 KB of static shared memory: more than any block may have without the opt-in (NVRTC refuses it too).
#include "common.cuh"

extern "C" __global__ void too_much_static(float* out) {
    __shared__ float tile[13 * 1024];
    tile[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}
