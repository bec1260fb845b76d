"""CuPy stand-in on the CPU simulator, not a GPU: cupy.cuda.driver's error, raised where CUDA's driver would."""


class CUDADriverError(RuntimeError):
    pass
