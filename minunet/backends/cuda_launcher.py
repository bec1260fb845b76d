"""The cuda launcher: kernels/*.cu compiled by CuPy's RawModule and launched on the GPU.

The options come from minunet.nvrtc.compile_options, the same function the GPU-less NVRTC check uses, so
what CI compiles is what runs here. Their MINUNET_SOURCE_HASH covers the headers the file includes, which
makes CuPy's on-disk kernel cache (keyed by source text + options) notice an edit of common.cuh.
"""
import os

import cupy
import numpy as np

from ..nvrtc import compile_options, real_name
from ..paths import kernel_path


class CudaLauncher:
    name = "cuda"
    xp = cupy

    def __init__(self):
        self._modules = {}    # (stem, dtype) -> RawModule, compiled on its first get_function
        self._functions = {}  # (stem, kernel, dtype) -> launch function

    def asarray(self, a):
        # Not ascontiguousarray: it turns a 0-d array into shape (1,). blocking=True: CuPy 14 copies from the
        # host asynchronously by default, and the caller may reuse its numpy buffer as soon as this returns.
        return cupy.asarray(a, order="C", blocking=True)

    def to_numpy(self, a):
        return cupy.asnumpy(a)

    def empty(self, shape, dtype):
        """cupy.empty; with MINUNET_POISON=1 filled with NaN (integers: their maximum) to expose unwritten outputs."""
        out = cupy.empty(shape, dtype)
        if os.environ.get("MINUNET_POISON") == "1":
            dtype = np.dtype(dtype)
            out.fill(np.nan if dtype.kind == "f" else np.iinfo(dtype).max)
        return out

    def function(self, stem, kernel, dtype):
        """The kernel as a callable f(grid, block, args, shared_mem=0)."""
        dtype = np.dtype(dtype)
        real_name(dtype)  # a clear ValueError for anything but float32/float64
        key = (stem, kernel, dtype)
        if key not in self._functions:
            module = self._modules.get((stem, dtype))
            if module is None:
                path = kernel_path(stem)
                module = cupy.RawModule(code=path.read_text(), options=compile_options(path, dtype))
                self._modules[(stem, dtype)] = module
            raw_kernel = module.get_function(kernel)

            def launch(grid, block, args, shared_mem=0):  # RawKernel takes shared_mem by keyword only
                raw_kernel(grid, block, args, shared_mem=shared_mem)
            self._functions[key] = launch
        return self._functions[key]
