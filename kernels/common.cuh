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

// A counter-based random number: the same (seed, index) gives the same number on every device and in
// NumPy (minunet/backends/numpy_misc.py reproduces it bit for bit), so dropout masks agree across devices.
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
