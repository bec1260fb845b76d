// 96 accumulators live at once and no __launch_bounds__: far more than 64 registers per thread, so a block
// of 1024 threads needs more than the 64 K registers a block may have (cudaErrorLaunchOutOfResources).
#include "common.cuh"

extern "C" __global__ void many_registers(const real* x, real* y, int n) {
    real acc[96];
#pragma unroll
    for (int k = 0; k < 96; ++k) acc[k] = x[(threadIdx.x * 96 + k) % n];
    for (int step = 0; step < n; ++step) {
#pragma unroll
        for (int k = 0; k < 96; ++k) acc[k] = acc[k] * acc[(k + 1) % 96] + x[(step + k) % n];
    }
    real total = 0;
#pragma unroll
    for (int k = 0; k < 96; ++k) total += acc[k];
    y[threadIdx.x] = total;
}
