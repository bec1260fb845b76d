"""The cuda and sim devices: both launch the same kernels/*.cu through a launcher.

The Python code that chooses grids and blocks lives here, once, so every CPU test of the simulator also
exercises the launch configuration that runs on the GPU.
"""
import numpy as np

from .kernel_conv import ConvKernelOps
from .kernel_misc import MiscKernelOps

_SCALAR_TYPES = (np.int32, np.uint32, np.float32, np.float64)


class KernelBackend(ConvKernelOps, MiscKernelOps):
    def __init__(self, launcher):
        self.launcher = launcher
        self.name = launcher.name
        self.xp = launcher.xp

    def asarray(self, a):
        return self.launcher.asarray(a)

    def to_numpy(self, a):
        return self.launcher.to_numpy(a)

    def empty(self, shape, dtype):
        """Output buffers; the simulator fills them with NaN so an element a kernel forgot shows up."""
        return self.launcher.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype)

    def real(self, dtype, value):
        """A scalar of the kernel's element type (np.float32 or np.float64), never a Python float."""
        return np.dtype(dtype).type(value)

    def launch(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        """Launch kernel `kernel` of kernels/<stem>.cu compiled for element type `dtype`.

        Enforces what CuPy does not check: contiguous arrays, scalars of an exact C type.
        """
        for i, a in enumerate(args):
            if isinstance(a, _SCALAR_TYPES):
                continue
            if isinstance(a, (bool, int, float)):
                raise TypeError(f"{kernel}: argument {i} is a Python {type(a).__name__}; pass np.int32/np.float32/...")
            if isinstance(a, np.generic):  # np.int64, np.bool_, ...: CuPy would pass its own size, not the C type's
                raise TypeError(f"{kernel}: argument {i} is a numpy {type(a).__name__}; pass np.int32/np.uint32/"
                                f"np.float32/np.float64 as the kernel's parameter type")
            if not getattr(a, "flags", None) or not a.flags.c_contiguous:
                raise ValueError(f"{kernel}: argument {i} must be a C-contiguous array")
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        fn = self.launcher.function(stem, kernel, np.dtype(dtype))
        fn(grid, block, tuple(args), shared_mem=int(shared_mem))
