"""Devices. One Backend object per device; each has every backend op of ARCHITECTURE.md, registered by
minunet/ops/<op>.py (registry.py). This layer imports no op and no autograd: the ops import it.

- "numpy": vectorised NumPy, the reference and the fast CPU path.
- "sim":   kernels/*.cu run on the CPU by minunet's simulator (slow, exact, debuggable).
- "cuda":  kernels/*.cu run on a GPU through CuPy.
- "auto":  cuda when a GPU is usable, else numpy (never the tests' CuPy stand-in, tests/cupy_standin).
"""
from functools import lru_cache

from .kernel_backend import KernelBackend
from .numpy_backend import NumpyBackend

DEVICES = ("numpy", "sim", "cuda")


def cuda_available() -> bool:
    """True when CuPy is installed and sees a usable GPU (never raises)."""
    try:
        import cupy
        return cupy.cuda.is_available()
    except Exception:
        return False


def standin_note():
    """The note of the tests' CuPy stand-in ("CuPy stand-in on the CPU simulator, not a GPU") when `import cupy`
    finds it (tests/cupy_standin first on the path), else None. "auto" never picks it; what runs on it says so."""
    try:
        import cupy
    except Exception:
        return None
    return getattr(cupy, "__minunet_standin__", None)


def resolve_device(name) -> str:
    if name is None or name == "auto":
        return "cuda" if cuda_available() and not standin_note() else "numpy"
    if not isinstance(name, str) or name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES + ('auto',)}, got {name!r}")
    if name == "cuda" and not cuda_available():
        raise RuntimeError("device 'cuda' asked for, but no usable GPU was found "
                           "(install minunet[cuda13] on a machine with an NVIDIA GPU and driver)")
    return name


@lru_cache(maxsize=None)
def get_backend(name="auto"):
    name = resolve_device(name)
    if name == "numpy":
        return NumpyBackend()
    if name == "sim":  # the simulator compiles with the host's C++ compiler, CuPy needs a GPU: load on demand
        from ..sim import SimLauncher
        return KernelBackend(SimLauncher())
    from .cuda_launcher import CudaLauncher
    return KernelBackend(CudaLauncher())
