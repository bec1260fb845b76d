// Warp functions as the PTX ISA defines them (issue #26): a shuffle may read only from a lane that exists and
// takes part, and every calling lane must be in its own mask. A mask that names lanes past the end of a
// partial warp is fine (sm_70 and later: only the non-exited lanes named in the mask take part).
#include "common.cuh"

// Warp sums by __shfl_down_sync. The bug: in a block of 80 threads the last warp has 16 lanes, and at offset
// 16 lanes 0-15 read lanes 16-31, which do not exist (on a GPU: an undefined value).
extern "C" __global__ void warp_sum_reads_missing_lanes(const real* x, real* sums) {
    int t = threadIdx.x;
    real v = x[blockIdx.x * blockDim.x + t];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (t % 32 == 0) sums[blockIdx.x * ((blockDim.x + 31) / 32) + t / 32] = v;
}

// The twin: the full mask is allowed (the missing lanes are not waited for), and `width` = the warp's lanes
// keeps every source inside the lanes that exist (outside its segment a lane gets its own value back).
extern "C" __global__ void warp_sum_within_lanes(const real* x, real* sums) {
    int t = threadIdx.x;
    int lanes = min(32, (int)blockDim.x - t / 32 * 32);  // a power of two in the tests: 32 or 16
    real v = x[blockIdx.x * blockDim.x + t];
    for (int offset = lanes / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset, lanes);
    if (t % 32 == 0) sums[blockIdx.x * ((blockDim.x + 31) / 32) + t / 32] = v;
}

// Half the warp broadcasts from a lane of the other half. The bug: lane 20 is not in the mask 0x0000ffff, so
// it does not take part, and the value read from it is undefined.
extern "C" __global__ void broadcast_from_lane_not_taking_part(const real* x, real* out) {
    int t = threadIdx.x;
    real v = x[t];
    if (t < 16) v = __shfl_sync(0x0000ffffu, v, 20);
    out[t] = v;
}

extern "C" __global__ void broadcast_within_mask(const real* x, real* out) {
    int t = threadIdx.x;
    real v = x[t];
    if (t < 16) v = __shfl_sync(0x0000ffffu, v, 15);
    out[t] = v;
}

// The bug: lane 0 calls with a mask that leaves itself out (undefined behaviour in the PTX ISA).
extern "C" __global__ void caller_not_in_its_mask(const real* x, real* out) {
    int t = threadIdx.x;
    unsigned mask = t == 0 ? 0xfffffffeu : 0xffffffffu;
    out[t] = __shfl_sync(mask, x[t], 1);
}
