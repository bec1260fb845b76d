"""The cuda launcher: kernels/*.cu compiled by CuPy's RawModule and launched on the GPU.

The options come from minunet/nvrtc_options.py, as for the GPU-less NVRTC check (nvrtc.py), so what CI
compiles is what runs here. Their MINUNET_SOURCE_HASH covers the headers the file includes, which
makes CuPy's on-disk kernel cache (keyed by source text + options) notice an edit of common.cuh.
Each launch configuration is checked against the compiled function's and the device's limits
(launch_limits.py) before its first launch, so a too-large block or too much shared memory is a one-line
error naming the kernel instead of CUDA's "too many resources requested for launch".
"""
import os

import cupy
import numpy as np

from ..nvrtc_options import compile_options, real_name
from ..paths import kernel_path
from .launch_limits import block_dims, check_launch, check_opt_in

# The compiled function's attributes that launch_limits checks (CuPy RawKernel properties of these names).
_FUNCTION_ATTRIBUTES = ("max_threads_per_block", "num_regs", "shared_size_bytes")


def function_attributes(raw_kernel):
    return {name: int(getattr(raw_kernel, name)) for name in _FUNCTION_ATTRIBUTES}


def device_limits(device_id):
    """The current device's limits, under launch_limits' names."""
    runtime = cupy.cuda.runtime
    get = lambda attribute: int(runtime.deviceGetAttribute(attribute, device_id))  # noqa: E731
    return dict(max_threads_per_block=get(runtime.cudaDevAttrMaxThreadsPerBlock),
                max_block_dim=(get(runtime.cudaDevAttrMaxBlockDimX), get(runtime.cudaDevAttrMaxBlockDimY),
                               get(runtime.cudaDevAttrMaxBlockDimZ)),
                max_registers_per_block=get(runtime.cudaDevAttrMaxRegistersPerBlock),
                max_shared_per_block=get(runtime.cudaDevAttrMaxSharedMemoryPerBlock),
                max_shared_per_block_optin=get(runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin))


class CudaLauncher:
    name = "cuda"
    xp = cupy

    def __init__(self):
        self._modules = {}    # (stem, dtype) -> RawModule, compiled on its first get_function
        self._functions = {}  # (stem, kernel, dtype, max_dynamic_shared) -> launch function
        self._limits = {}     # device id -> device_limits

    def asarray(self, a):
        # Not ascontiguousarray: it turns a 0-d array into shape (1,). blocking=True: CuPy 14 copies from the
        # host asynchronously by default, and the caller may reuse its numpy buffer as soon as this returns.
        return cupy.asarray(a, order="C", blocking=True)

    def to_numpy(self, a):
        return cupy.asnumpy(a)

    def compute_capability(self):
        return int(cupy.cuda.Device().compute_capability)  # "90" on an H100

    def empty(self, shape, dtype):
        """cupy.empty; with MINUNET_POISON=1 filled with NaN (integers: their maximum) to expose unwritten outputs."""
        out = cupy.empty(shape, dtype)
        if os.environ.get("MINUNET_POISON") == "1":
            dtype = np.dtype(dtype)
            out.fill(np.nan if dtype.kind == "f" else np.iinfo(dtype).max)
        return out

    def function(self, stem, kernel, dtype, max_dynamic_shared=None):
        """The kernel as a callable f(grid, block, args, shared_mem=0).

        max_dynamic_shared=B opts the function in to up to B bytes of dynamic shared memory per launch (CUDA's
        cudaFuncAttributeMaxDynamicSharedMemorySize, needed past 48 KB); without it, static + dynamic shared
        memory must stay within 48 KB.
        """
        dtype = np.dtype(dtype)
        real_name(dtype)  # a clear ValueError for anything but float32/float64
        key = (stem, kernel, dtype, max_dynamic_shared)
        if key not in self._functions:
            module = self._modules.get((stem, dtype))
            if module is None:
                path = kernel_path(stem)
                module = cupy.RawModule(code=path.read_text(), options=compile_options(path, dtype))
                self._modules[(stem, dtype)] = module
            raw_kernel = module.get_function(kernel)
            attributes = function_attributes(raw_kernel)
            device_id = cupy.cuda.Device().id
            if device_id not in self._limits:
                self._limits[device_id] = device_limits(device_id)
            limits = self._limits[device_id]
            if max_dynamic_shared is not None:
                check_opt_in(kernel, attributes, limits, max_dynamic_shared)
                # Raised, never lowered: every RawKernel of this module's kernel shares the CUDA function.
                if raw_kernel.max_dynamic_shared_size_bytes < max_dynamic_shared:
                    raw_kernel.max_dynamic_shared_size_bytes = max_dynamic_shared
            checked = set()  # (block, shared_mem) already checked: the check runs before a first launch only

            def launch(grid, block, args, shared_mem=0):  # RawKernel takes shared_mem by keyword only
                config = (block_dims(block), shared_mem)
                if config not in checked:
                    check_launch(kernel, attributes, limits, block, shared_mem, max_dynamic_shared)
                    checked.add(config)
                raw_kernel(grid, block, args, shared_mem=shared_mem)
            self._functions[key] = launch
        return self._functions[key]
