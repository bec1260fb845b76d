"""CuPy stand-in on the CPU simulator, not a GPU: RawModule and RawKernel.

The code is compiled by minunet's simulator (SimModule) in its GPU-arithmetic mode, as NVRTC compiles it for
CuPy (FMA contraction, -ftz=true); the function attributes are NVRTC's report of the same code and options for
the stand-in's sm_90 (_nvrtc.py). Launches are checked as CUDA checks them and their arguments converted as
CuPy's function.pyx converts them, then handed to the simulator with the bytes the kernel would read.
"""
import hashlib
import re
from pathlib import Path

import numpy as np

from minunet import paths
from minunet.sim import SimModule
from minunet.sim.build import included_files

from . import _nvrtc, ndarray

_DEFAULT_DYNAMIC_SHARED = 48 * 1024  # what a function may use without cudaFuncAttributeMaxDynamicSharedMemorySize


def _parse_options(options):
    """(defines, include folders) of NVRTC options; an option the simulator cannot honour is refused."""
    defines, include_dirs = {}, []
    for option in options:
        if option.startswith("-D"):
            name, _, value = option[2:].partition("=")
            defines[name] = value or None
        elif option.startswith("-I"):
            include_dirs.append(Path(option[2:]))
        else:
            raise NotImplementedError(f"cupy stand-in: the NVRTC option {option!r} is not emulated by the simulator")
    return defines, include_dirs


def _source_path(code, include_dirs):
    """The .cu file in an include folder with exactly this text (so the simulator's cache of the sim device's
    libraries serves), else a copy of the code in the cache."""
    for folder in include_dirs:
        for candidate in sorted(folder.glob("*.cu")):
            if candidate.read_text() == code:
                return candidate
    copy = paths.cache_dir() / "cupy-standin" / hashlib.sha256(code.encode()).hexdigest()[:16] / "kernel.cu"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(code)
    return copy


class RawModule:
    """cupy.RawModule(code=..., options=(...)): compiled on first get_function."""

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if not isinstance(options, tuple):  # CuPy's signature types it: `tuple options`
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got {type(options).__name__})")
        if code is None or path is not None or backend != "nvrtc" or name_expressions or jitify:
            raise NotImplementedError("cupy stand-in: only RawModule(code=..., options=...) is emulated")
        self.code, self.options = code, options
        self._sim = None

    def _module(self):
        if self._sim is None:
            defines, include_dirs = _parse_options(self.options)
            path = _source_path(self.code, include_dirs)
            # A macro the code never names cannot change the build (MINUNET_SOURCE_HASH only keys CuPy's
            # cache): left out, the simulator's cache of the same file serves.
            text = "\n".join([self.code] + [h.read_text() for h in included_files(path, include_dirs)])
            used = {k: v for k, v in defines.items() if re.search(rf"\b{re.escape(k)}\b", text)}
            self._sim = SimModule(path, defines=used, include_dirs=include_dirs, gpu_math=True)
            self._resources = _nvrtc.resources(self.code, self.options)
        return self._sim

    def get_function(self, name):
        module = self._module()
        if name not in module.kernels:
            from .cuda.driver import CUDADriverError
            raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name})")
        return RawKernel(self, name)


def _max_threads(registers, launch_bounds):
    """CUDA's cudaFuncAttributeMaxThreadsPerBlock: registers are allocated per warp in units of 256, 64 K per
    block; __launch_bounds__ caps it."""
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    return min(launch_bounds, 1024, (65536 // per_warp) * 32)


class RawKernel:
    """A kernel of a RawModule: the attributes CudaLauncher reads, and the launch."""

    def __init__(self, module, name):
        self._module, self.name = module, name
        self._sim_kernel = module._module().get_function(name)
        self._registers, self._shared = module._resources[name]
        self._max_threads = _max_threads(self._registers, self._sim_kernel.attributes["max_threads_per_block"])
        self._max_dynamic_shared = _DEFAULT_DYNAMIC_SHARED - self._shared

    num_regs = property(lambda self: self._registers)
    shared_size_bytes = property(lambda self: self._shared)
    max_threads_per_block = property(lambda self: self._max_threads)

    @property
    def max_dynamic_shared_size_bytes(self):
        return self._max_dynamic_shared

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        from .cuda import runtime
        from .cuda.driver import CUDADriverError
        optin = runtime.deviceGetAttribute(runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin, runtime.getDevice())
        if value + self.shared_size_bytes > optin:
            raise CUDADriverError("CUDA_ERROR_INVALID_VALUE: invalid argument")
        self._max_dynamic_shared = int(value)

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        from .cuda.driver import CUDADriverError
        for what, dims in (("grid", grid), ("block", block)):
            if not isinstance(dims, tuple):  # Function.__call__(self, tuple grid, tuple block, ...)
                raise TypeError(f"Argument '{what}' has incorrect type (expected tuple, got {type(dims).__name__})")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel '{self.name}': args must be a tuple, got {type(args).__name__}")
        grid = tuple(max(1, int(g)) for g in (grid + (1, 1))[:3])   # CuPy launches 0 as 1
        block = tuple(max(1, int(b)) for b in (block + (1, 1))[:3])
        if int(np.prod(block)) > self.max_threads_per_block:
            raise CUDADriverError("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: too many resources requested for launch")
        if shared_mem > self._max_dynamic_shared:
            raise CUDADriverError("CUDA_ERROR_INVALID_VALUE: invalid argument")
        params = self._sim_kernel.params
        if len(args) != len(params):  # a GPU reads whatever follows: undefined
            raise TypeError(f"kernel '{self.name}' takes {len(params)} arguments, got {len(args)}")
        converted = tuple(_argument(self.name, p, a) for p, a in zip(params, args))
        opted_in = self._max_dynamic_shared > _DEFAULT_DYNAMIC_SHARED - self._shared
        sim_kernel = self._module._sim.get_function(self.name, self._max_dynamic_shared if opted_in else None)
        sim_kernel(grid, block, converted, shared_mem=int(shared_mem))


def _scalar_bytes(value):
    """The bytes CuPy passes for a scalar argument (_scalar.CScalar): bool 1, int 8 (int64, uint64 from 2**63),
    float 8 (double), a NumPy scalar its own."""
    if type(value) is bool:
        return np.bool_(value).tobytes()
    if type(value) is int:
        return (np.uint64(value) if value >= 2**63 else np.int64(value)).tobytes()
    if type(value) is float:
        return np.float64(value).tobytes()
    if isinstance(value, np.generic):
        return value.tobytes()
    raise TypeError(f"Unsupported type {type(value)}")


def _argument(kernel, param, value):
    """The argument the simulator gets for `value`: the array (its bytes read as the parameter's type, as a
    kernel reads a pointer) or the scalar of the parameter's type made of the bytes CuPy passes."""
    where = f"cupy stand-in: kernel '{kernel}' parameter '{param.name}' ({param.c_type})"
    if isinstance(value, ndarray):
        if not param.pointer:
            raise TypeError(f"{where}: an array was given; CuPy would pass its address as the value")
        if not value.flags.c_contiguous:
            raise TypeError(f"{where}: a non-contiguous array; the kernel would ignore its strides")
        a = value._a
        if param.dtype is None or a.dtype == param.dtype:
            return a
        return a.reshape(-1).view(np.uint8)[:a.nbytes - a.nbytes % param.dtype.itemsize].view(param.dtype)
    if param.pointer:
        raise TypeError(f"{where}: needs a device array, got {type(value).__name__} "
                        f"(a host array or a scalar would be read as an address)")
    if isinstance(value, np.ndarray):
        if value.size != 1:  # function.pyx's own refusal
            raise TypeError(f"You are trying to pass a numpy.ndarray of shape {value.shape} as a kernel parameter. "
                            "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a pointer "
                            "to __global__ memory, you need to pass a cupy.ndarray instead.")
        raw = value.tobytes()
    else:
        raw = _scalar_bytes(value)
    size = param.dtype.itemsize
    if len(raw) < size:
        raise TypeError(f"{where}: {len(raw)} bytes given ({type(value).__name__}); the kernel would read {size}, "
                        f"past them")
    return np.frombuffer(raw[:size], param.dtype)[0]
