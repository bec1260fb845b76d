"""Argument checks, and the few small helpers, that several ops share.

Two levels. The user functions (F.conv3x3, ...) check Tensors: kind, dtype, device, shape, naming the argument
and what was expected; nothing is cast silently. The backend ops of relu, crop, concat, dropout, bias_grad,
max pooling, the loss and SGD check their arrays again (check_real, check_same), because tests, exercises and
the bench call them directly; the convolutions' backend ops check only the version and the int32 sizes
(their arrays come from the user functions, or from tests and the bench that build them right).
"""
import numpy as np

from ..tensor import Tensor

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- Tensors, for the user functions ------------------------------------------------------------------------
def check_tensor(op, name, t, ndim=None, shape_hint=""):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a minunet Tensor, got {type(t).__name__}; wrap it: mu.Tensor(array)")
    if t.dtype not in FLOATS:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {t.dtype}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions {shape_hint}, got shape {t.shape}")
    if not t.data.flags.c_contiguous:
        raise ValueError(f"{op}: {name} is not C-contiguous; make a contiguous copy first "
                         f"(numpy.ascontiguousarray)")


def check_like(op, x, **others):
    """The other tensors share x's dtype and device (no silent casts or transfers)."""
    for name, t in others.items():
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} is {t.dtype} but x is {x.dtype}; convert one explicitly")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device!r} but x is on {x.device!r}; use .to({x.device!r})")


def check_weight_bias(op, x, w, b, w_shape):
    """w must have exactly w_shape (None entries are free); b, if given, shape (w_shape[0] or Cout,)."""
    check_tensor(op, "w", w, len(w_shape), str(tuple("*" if s is None else s for s in w_shape)))
    if any(s is not None and s != ws for s, ws in zip(w_shape, w.shape)):
        want = tuple("Cout" if s is None else s for s in w_shape)
        raise ValueError(f"{op}: w must have shape {want} for x with {x.shape[1]} channels, got {w.shape}")
    check_like(op, x, w=w)
    if b is not None:
        cout = w.shape[w_shape.index(None)]  # the free entry of w_shape is Cout
        check_tensor(op, "b", b, 1, f"(Cout,) = ({cout},)")
        if b.shape != (cout,):
            raise ValueError(f"{op}: b must have shape ({cout},), got {b.shape}")
        check_like(op, x, b=b)


# -- arrays, for the backend ops ----------------------------------------------------------------------------
def check_real(name, a, ndim=None):
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")


def check_same(name_a, a, name_b, b, shape=True):
    if a.dtype != b.dtype:
        raise TypeError(f"{name_b} must have the dtype of {name_a} ({a.dtype}), got {b.dtype}")
    if shape and a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {a.shape}, got {b.shape}")


# -- the convolutions' shared plumbing ----------------------------------------------------------------------
def tensors(*items):
    return tuple(t for t in items if t is not None)


def grads_for(ctx, *grads):
    """Backward returns one gradient per Tensor input; skip the work for inputs that need none."""
    return tuple(g() if need else None for g, need in zip(grads, ctx.needs_input_grad))


def flat(a):
    """(N, C, H, W) -> (N, C, H*W), a view for a C-contiguous array (also for N = 0, where -1 is ambiguous)."""
    N, C, H, W = a.shape
    return a.reshape(N, C, H * W)


def add_bias(y, b):
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def bias_args(w, b):
    # Without a bias the kernel never reads b; it still needs a valid pointer of the right type.
    return (w if b is None else b), np.int32(b is not None)
