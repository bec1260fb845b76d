"""CuPy stand-in on the CPU simulator, not a GPU: its companion for PyTorch, device "cuda" on PyTorch's CPU.

Loaded by PyTorch itself at `import torch` (its autoload of device extensions, the "torch.backends" entry point
of torch_cuda_standin-0.dist-info beside this file) wherever tests/cupy_standin is on the path, so the bench's
PyTorch-with-CUDA code (minunet/bench/gpu.py, timing.torch_timer) runs in CI without a GPU. It provides exactly
what minunet uses of `torch.cuda`, each name checked against the real torch by tests/test_cupy_standin.py:
- is_available() is True, current_device() 0, get_device_properties() an H100's (its name says it is the
  stand-in, first);
- a tensor made on or moved to "cuda" (`.cuda()`, `.to("cuda")`, `device="cuda"`, a module's `.to("cuda")`) is
  a copy in host memory, computed by PyTorch's CPU kernels (so cuDNN's TF32 switches change nothing here);
- Event(enable_timing=True) records host time (every CPU op is synchronous), refusing what CUDA refuses;
- the caching allocator's statistics are 0: there is no device memory to count.
What it cannot do: tell a tensor on "cuda" from one on the CPU (all are on the CPU), so a missing `.cuda()`
that PyTorch would refuse goes unnoticed here; and anything a GPU measures.
"""
import time

import torch
from torch.overrides import TorchFunctionMode

NOTE = "CuPy stand-in on the CPU simulator, not a GPU"
_CPU = torch.device("cpu")


class _Properties:
    """torch.cuda.get_device_properties's fields that minunet reads, as an H100 SXM5 80 GB reports them."""
    name = f"{NOTE} (reports an NVIDIA H100 80GB HBM3's properties)"
    major, minor, multi_processor_count = 9, 0, 132
    total_memory = 80 * 2**30
    L2_cache_size = 50 * 2**20


def _on_cpu(value):
    """A "cuda" device (string or torch.device) as the CPU; anything else as it is."""
    if isinstance(value, torch.device) and value.type == "cuda":
        return _CPU
    if isinstance(value, str) and (value == "cuda" or value.startswith("cuda:")):
        return _CPU
    return value


class _CudaOnCpu(TorchFunctionMode):
    """Every PyTorch call with a "cuda" device gets the CPU instead; a move to "cuda" copies, as a real one."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.device:  # the device object keeps its name: the calls that take it are the ones mapped
            return func(*args, **kwargs)
        if func is torch.Tensor.cuda:
            return args[0].to(_CPU, copy=True)
        moved = any(_on_cpu(v) is not v for v in (*args, *kwargs.values()))
        args, kwargs = [_on_cpu(v) for v in args], {k: _on_cpu(v) for k, v in kwargs.items()}
        if func is torch.Tensor.to and moved:
            kwargs["copy"] = True
        return func(*args, **kwargs)


class Event:
    """torch.cuda.Event: host time at record(); elapsed_time in milliseconds, as CUDA's."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False, external=False):
        self.enable_timing, self._time = enable_timing, None

    def record(self, stream=None):
        self._time = time.perf_counter()

    def synchronize(self):
        pass  # every CPU op has finished when it returns

    def query(self):
        return True

    def elapsed_time(self, end_event):
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("CUDA error: invalid resource handle (an Event made without enable_timing=True)")
        if self._time is None or end_event._time is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._time - self._time) * 1e3


def is_available():
    return True


def current_device():
    return 0


def get_device_properties(device=None):
    if device not in (None, 0) and str(device) not in ("cuda", "cuda:0"):
        raise RuntimeError(f"Invalid device argument {device!r}: the stand-in has one device, 0")
    return _Properties()


def empty_cache():
    pass


def reset_peak_memory_stats(device=None):
    pass


def max_memory_allocated(device=None):
    return 0


def max_memory_reserved(device=None):
    return 0


REPLACED = ("is_available", "current_device", "get_device_properties", "Event", "empty_cache",
            "reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved")


def install():
    """The entry point: torch.cuda's names above replaced, and "cuda" mapped to the CPU for the whole process."""
    for name in REPLACED:
        setattr(torch.cuda, name, globals()[name])
    torch.cuda.__minunet_standin__ = NOTE
    _CudaOnCpu().__enter__()  # never left: the process runs under the stand-in to its end
