"""The cuda and sim devices: both launch the same kernels/*.cu through a launcher.

Their backend ops are the `@kernel_op` functions `kernel_<op>(be, ...)` of minunet/ops/<op>.py (registry.py):
each picks its kernel version's launcher (same file), which calls `launch` below. The launch code is shared, so
every CPU test of the simulator also exercises the launch configuration that runs on the GPU.
"""
import types

import numpy as np

from .registry import KERNEL_OPS, backend_op

_SCALAR_TYPES = (np.int32, np.uint32, np.float32, np.float64)


class KernelBackend:
    def __getattr__(self, op):  # a backend op, bound to this backend once, then an attribute
        method = types.MethodType(backend_op(KERNEL_OPS, self.__dict__.get("name", "?"), op), self)
        setattr(self, op, method)
        return method

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

    def compute_capability(self):
        """The GPU's compute capability as an int (90 for sm_90); None on the sim, which emulates every feature."""
        return self.launcher.compute_capability()

    def real(self, dtype, value):
        """A scalar of the kernel's element type (np.float32 or np.float64), never a Python float."""
        return np.dtype(dtype).type(value)

    def launch(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        """Launch kernel `kernel` of kernels/<stem>.cu compiled for element type `dtype`; the one place every
        launcher of minunet/ops/ calls.

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
        if min(grid) == 0:  # an empty output: nothing to do (CUDA refuses a grid without blocks)
            return
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        fn = self.launcher.function(stem, kernel, np.dtype(dtype))
        fn(grid, block, tuple(args), shared_mem=int(shared_mem))
