// A 16-byte vector load from an address that is not 16-byte aligned: a GPU faults (misaligned address).
extern "C" __global__ void load_float4(const float* x, float* out, int offset) {
    float4 v = *reinterpret_cast<const float4*>(x + offset + 4 * threadIdx.x);
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}
