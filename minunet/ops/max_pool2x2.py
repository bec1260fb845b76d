"""max_pool2x2: 2x2 max pooling, stride 2, with the argmax its backward needs; every Python part of it.

In order: the argument checks; the user function max_pool2x2 and its autograd Function; the numpy device
(vectorised, written to be read next to kernels/max_pool2x2.cu); the launches of kernels/max_pool2x2.cu for
cuda and sim, one launcher per kernel, named as its kernel. argmax (uint8) = 2*dy + dx of the window's maximum, the first
one on a tie; a NaN in the window is the maximum.
"""
import numpy as np

from .. import threads
from ..backends.registry import kernel_op, numpy_op
from ..threads import planes
from ..tensor import Function
from .checks import check_real, check_tensor
from .elementwise import keep_where
from .launching import KernelDefines, cdiv, check_int32_size, i32, launcher, pick


# -- argument checks of the backend ops --------------------------------------------------------------------
def check_pool_input(x):
    check_real("x", x, ndim=4)
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"max_pool2x2 needs an even height and width, got x of shape {x.shape}")


def check_pool_grad(gy, argmax):
    check_real("gy", gy, ndim=4)
    if argmax.dtype != np.uint8 or argmax.shape != gy.shape:
        raise ValueError(f"argmax must be uint8 of shape {gy.shape}, got {argmax.dtype} {argmax.shape}")


# -- the user function and its autograd Function ---------------------------------------------------------
class _MaxPool2x2(Function):
    @staticmethod
    def forward(ctx, x):
        y, argmax = ctx.backend.max_pool2x2(x)
        ctx.save_for_backward(argmax)
        return y

    @staticmethod
    def backward(ctx, gy):
        (argmax,) = ctx.saved_tensors
        return ctx.backend.max_pool2x2_grad(gy, argmax)


def max_pool2x2(x):
    """2x2 max pooling, stride 2. H and W must be even: the paper chooses tiles so that no pixel is dropped."""
    check_tensor("max_pool2x2", "x", x, 4, "(N, C, H, W)")
    h, w = x.shape[2:]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"max_pool2x2: H and W must be even and > 0, got {h}x{w} (x shape {x.shape}); "
                         f"choose the tile size with minunet.unet.valid_input_sizes")
    return _MaxPool2x2.apply(x)


# -- the numpy device: the window's 4 corners are strided views, so nothing is copied or transposed ----------
def _window_corners(a):
    """The 4 pixels of every 2x2 window of planes (P, H, W) as strided views (P, H/2, W/2), in the kernels' order
    k = 2*dy + dx."""
    return [a[:, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]


@numpy_op
def numpy_max_pool2x2(x):
    check_pool_input(x)
    N, C, H, W = x.shape
    y, argmax = np.empty((N, C, H // 2, W // 2), x.dtype), np.empty((N, C, H // 2, W // 2), np.uint8)
    xs, ys, argmaxes = planes(x), planes(y), planes(argmax)
    threads.slices(lambda s: _pool(xs[s], ys[s], argmaxes[s]), N * C, H * W)
    return y, argmax


def _pool(x, y, argmax):
    """Planes x (P, H, W) -> y, argmax (P, H/2, W/2), written in place."""
    c = _window_corners(x)
    # np.maximum returns NaN if either side is NaN, so y is NaN iff the window holds one, as in the kernel.
    # (Where +0.0 and -0.0 tie, np.maximum may return either zero, the kernel the first one; they compare equal.)
    np.maximum(np.maximum(c[0], c[1]), np.maximum(c[2], c[3]), out=y)
    # argmax: the first corner equal to y (or the first NaN), found without a branch per element: with
    # not_k = "corner k is neither y nor NaN" (0 or 1), argmax = not_0 * (1 + not_1 * (1 + not_2)).
    not_it = [((ck != y) & (ck == ck)).view(np.uint8) for ck in c[:3]]
    np.multiply(not_it[0], 1 + not_it[1] * (1 + not_it[2]), out=argmax)


@numpy_op
def numpy_max_pool2x2_grad(gy, argmax):
    check_pool_grad(gy, argmax)
    N, C, h, w = gy.shape
    gx = np.empty((N, C, 2 * h, 2 * w), gy.dtype)
    gxs, gys, argmaxes = planes(gx), planes(gy), planes(argmax)

    def scatter(s):
        for k, corner in enumerate(_window_corners(gxs[s])):  # the 4 views cover gx exactly once
            corner[...] = keep_where(argmaxes[s] == k, gys[s])
    threads.slices(scatter, N * C, 4 * h * w)
    return gx


# -- the kernel devices (cuda, sim): kernels/max_pool2x2.cu, one launcher per kernel, named as its kernel -----
THREADS = KernelDefines("max_pool2x2.cu").MINUNET_THREADS  # one thread per output element


@kernel_op
def kernel_max_pool2x2(be, x, version=None):
    check_pool_input(x)
    launch = pick("max_pool2x2_forward", version, x.dtype, be)
    N, C, H, W = x.shape
    check_int32_size("max_pool2x2", x.shape)
    y = be.empty((N, C, H // 2, W // 2), x.dtype)
    argmax = be.empty((N, C, H // 2, W // 2), np.uint8)
    launch(be, x, y, argmax)
    return y, argmax


@launcher
def max_pool2x2_forward_v1(be, x, y, argmax):
    be.launch("max_pool2x2", "max_pool2x2_forward_v1", x.dtype, (cdiv(y.size, THREADS),), (THREADS,),
              (x, y, argmax) + i32(*x.shape))


@kernel_op
def kernel_max_pool2x2_grad(be, gy, argmax, version=None):
    check_pool_grad(gy, argmax)
    launch = pick("max_pool2x2_backward", version, gy.dtype, be)
    N, C, h, w = gy.shape
    check_int32_size("max_pool2x2_grad", (N, C, 2 * h, 2 * w))
    gx = be.empty((N, C, 2 * h, 2 * w), gy.dtype)
    launch(be, gy, argmax, gx)
    return gx


@launcher
def max_pool2x2_backward_v1(be, gy, argmax, gx):
    """One thread per element of gx: it reads its window's argmax."""
    be.launch("max_pool2x2", "max_pool2x2_backward_v1", gy.dtype, (cdiv(gx.size, THREADS),), (THREADS,),
              (gy, argmax, gx) + i32(*gx.shape))
