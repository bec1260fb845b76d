"""minunet: a small deep-learning engine with hand-written CUDA kernels, and the original U-Net.

    import minunet as mu
    x = mu.Tensor(array, requires_grad=True, device="sim")
    y = mu.functional.conv3x3(x, w, b)
"""
import sys

if sys.argv[:1] == ["-m"]:  # `python -m minunet.<tool>` is starting (argv[0] is "-m" while the module is found)
    from .cli import exit_quietly_on_ctrl_c
    exit_quietly_on_ctrl_c()  # a Ctrl-C while the libraries load: exit 130, no import traceback

from . import functional, optim  # noqa: E402
from .backends import cuda_available, get_backend  # noqa: E402
from .tensor import Function, Tensor, is_grad_enabled, no_grad  # noqa: E402

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
