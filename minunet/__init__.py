"""minunet: a small deep-learning engine with hand-written CUDA kernels, and the original U-Net.

    import minunet as mu
    x = mu.Tensor(array, requires_grad=True, device="sim")
    y = mu.functional.conv3x3(x, w, b)
"""
import os as _os


def _share_cores_among_processes():
    """DATA PARALLEL: K processes that an MPI launcher started on one machine each get 1/K of its cores for
    BLAS, unless the user set a thread count. BLAS reads these variables once, when NumPy loads it, so this
    runs before any import of NumPy. Measured (README): 20 steps of 2 processes on 2 cores took 150 s with
    OpenBLAS's default 2 threads each, 13 s with 1."""
    local = _os.environ.get("MPI_LOCALNRANKS") or _os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or ""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    if local.isdigit() and int(local) > 1 and not any(name in _os.environ for name in names):
        for name in names:
            _os.environ[name] = str(max(1, (_os.cpu_count() or 1) // int(local)))


_share_cores_among_processes()

from . import functional, optim  # noqa: E402
from .backends import cuda_available, get_backend
from .tensor import Function, Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"


def __getattr__(name):
    # The model and data modules pull in SciPy and friends; load them on first use only.
    import importlib
    if name == "UNet":
        return importlib.import_module(".unet", __name__).UNet
    if name in ("unet", "data", "nn", "metrics", "gradcheck"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minunet' has no attribute {name!r}")


__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "functional", "optim", "get_backend",
           "cuda_available", "UNet"]
