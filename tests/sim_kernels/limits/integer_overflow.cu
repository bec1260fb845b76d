// Index arithmetic in int that overflows for a large stride, and a shift by the width of the type.
extern "C" __global__ void overflowing_index(const float* x, float* out, int stride) {
    int i = ((int)blockIdx.x + 1) * stride + (int)threadIdx.x;  // signed overflow is undefined behaviour
    out[threadIdx.x] = x[i % 8];
}

extern "C" __global__ void shift_by_width(unsigned int* out, int shift) {
    out[threadIdx.x] = 1u << (shift + (int)threadIdx.x);
}
