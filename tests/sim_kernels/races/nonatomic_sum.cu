// Every thread adds its element to one total. `total[0] += x[i]` is a read, an add and a write: on a GPU two
// threads read the same old total and one addition is lost. atomicAdd makes the three steps one.
#include "common.cuh"

extern "C" __global__ void sum_without_atomic(const real* x, real* total, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) total[0] += x[i];  // the bug
}

extern "C" __global__ void sum_with_atomic(const real* x, real* total, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(total, x[i]);
}
