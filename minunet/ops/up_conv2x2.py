"""up_conv2x2: 2x2 up-convolution (transposed convolution, stride 2), doubling H and W; every Python part of it.

    y[n,o,2i+a,2j+c] = sum_ci x[n,ci,i,j] w[ci,o,a,c] + b[o]          w: (Ci, Co, 2, 2), PyTorch's layout

In order: the user function up_conv2x2 and its autograd Function; the numpy device; the launches of
kernels/up_conv2x2.cu for cuda and sim, one launcher per kernel version, named as its kernel.

The numpy path: each input pixel writes 4 disjoint output pixels, so the op is one product
(Co*2*2, Ci) @ (Ci, H*W) followed by a reshape/transpose that interleaves the 2x2 blocks; the backward ops are
its transposes.
"""
import numpy as np

from .. import threads
from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function
from .checks import add_bias, bias_args, check_tensor, check_weight_bias, grads_for, tensors
from .launching import KernelDefines, cdiv, check_int32_size, i32, launch_split_k, launcher, pick


# -- the user function and its autograd Function ---------------------------------------------------------
class _UpConv2x2(Function):
    @staticmethod
    def forward(ctx, x, w, *b):
        ctx.save_for_backward(x, w)
        return ctx.backend.up_conv2x2(x, w, b[0] if b else None)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        be = ctx.backend
        return grads_for(ctx, lambda: be.up_conv2x2_grad_input(gy, w),
                         lambda: be.up_conv2x2_grad_weight(x, gy), lambda: be.bias_grad(gy))


def up_conv2x2(x, w, b=None):
    """2x2 up-convolution (transposed convolution, stride 2): doubles H and W. w: (Cin, Cout, 2, 2)."""
    check_tensor("up_conv2x2", "x", x, 4, "(N, Cin, H, W)")
    check_weight_bias("up_conv2x2", x, w, b, (x.shape[1], None, 2, 2))
    return _UpConv2x2.apply(x, w, *tensors(b))


# -- the numpy device ------------------------------------------------------------------------------------
# Each image's product on one of the device's threads; grad_weight's partials added in image order.
@numpy_op
def numpy_up_conv2x2(x, w, b):
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    y, wt = np.empty((N, Co, 2 * H, 2 * W), x.dtype), w.reshape(Ci, Co * 4).T

    def image(n):
        # (Co*2*2, Ci) @ (Ci, H*W): row (o,a,c) holds the output pixels y[o, 2i+a, 2j+c] for all (i,j).
        blocks = (wt @ x[n].reshape(Ci, H * W)).reshape(Co, 2, 2, H, W)
        y[n].reshape(Co, H, 2, W, 2)[...] = blocks.transpose(0, 3, 1, 4, 2)
        add_bias(y[n:n + 1], b)
    threads.parallel(image, N)
    return y


def _split_2x2_blocks(gy):
    """(Co, 2H, 2W) -> (Co*2*2, H*W): the inverse of up_conv2x2's interleave, for one image."""
    Co, H2, W2 = gy.shape
    H, W = H2 // 2, W2 // 2
    return gy.reshape(Co, H, 2, W, 2).transpose(0, 2, 4, 1, 3).reshape(Co * 4, H * W)


@numpy_op
def numpy_up_conv2x2_grad_input(gy, w):
    N, _, H2, W2 = gy.shape
    Ci = w.shape[0]
    gx, w2 = np.empty((N, Ci, H2 // 2, W2 // 2), gy.dtype), w.reshape(Ci, -1)

    def image(n):
        np.matmul(w2, _split_2x2_blocks(gy[n]), out=gx[n].reshape(Ci, -1))
    threads.parallel(image, N)
    return gx


@numpy_op
def numpy_up_conv2x2_grad_weight(x, gy):
    N, Ci, Co = x.shape[0], x.shape[1], gy.shape[1]
    parts = np.zeros((N, Ci, Co * 4), x.dtype)

    def image(n):
        np.matmul(x[n].reshape(Ci, -1), _split_2x2_blocks(gy[n]).T, out=parts[n])
    threads.parallel(image, N)
    return parts.sum(axis=0).reshape(Ci, Co, 2, 2)


# -- the kernel devices (cuda, sim): kernels/up_conv2x2.cu, one launcher per kernel version, named as its kernel
UP_CONV2X2 = KernelDefines("up_conv2x2.cu")


@kernel_op
def kernel_up_conv2x2(be, x, w, b, *, version=None):
    launch = pick("up_conv2x2_forward", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    check_int32_size("up_conv2x2", (N, Co, 2 * H, 2 * W))
    y = be.empty((N, Co, 2 * H, 2 * W), x.dtype)
    bias, has_bias = bias_args(w, b)
    launch(be, (x, w, bias, y) + i32(N, Ci, H, W, Co) + (has_bias,), y)
    return y


@launcher
def up_conv2x2_forward_v1(be, args, y):
    """One thread per output element."""
    threads = UP_CONV2X2.MINUNET_THREADS
    be.launch("up_conv2x2", "up_conv2x2_forward_v1", y.dtype, (cdiv(y.size, threads),), (threads,), args)


@launcher
def up_conv2x2_forward_v2(be, args, y):
    """GEMM: (Co*2*2 x N*H*W) = w^T . x, a BM x BN block tile each (columns in grid x)."""
    BM, BN = UP_CONV2X2.MINUNET_GEMM_BM, UP_CONV2X2.MINUNET_GEMM_BN
    grid = (cdiv(y[:, 0].size // 4, BN), cdiv(4 * y.shape[1], BM))
    be.launch("up_conv2x2", "up_conv2x2_forward_v2", y.dtype, grid, (UP_CONV2X2.MINUNET_GEMM_THREADS,), args)


@kernel_op
def kernel_up_conv2x2_grad_input(be, gy, w, *, version=None):
    launch = pick("up_conv2x2_grad_input", version, gy.dtype, be)
    N, Co, H2, W2 = gy.shape
    Ci = w.shape[0]
    check_int32_size("up_conv2x2_grad_input", gy.shape)
    gx = be.empty((N, Ci, H2 // 2, W2 // 2), gy.dtype)
    launch(be, (gy, w, gx) + i32(N, Ci, H2 // 2, W2 // 2, Co), gx)
    return gx


@launcher
def up_conv2x2_grad_input_v1(be, args, gx):
    """One thread per element of gx."""
    threads = UP_CONV2X2.MINUNET_THREADS
    be.launch("up_conv2x2", "up_conv2x2_grad_input_v1", gx.dtype, (cdiv(gx.size, threads),), (threads,), args)


@launcher
def up_conv2x2_grad_input_v2(be, args, gx):
    """GEMM: gx (Ci x N*H*W) = w . gy's 2x2 blocks, a BM x BN block tile each."""
    BM, BN = UP_CONV2X2.MINUNET_GEMM_BM, UP_CONV2X2.MINUNET_GEMM_BN
    grid = (cdiv(gx[:, 0].size, BN), cdiv(gx.shape[1], BM))
    be.launch("up_conv2x2", "up_conv2x2_grad_input_v2", gx.dtype, grid, (UP_CONV2X2.MINUNET_GEMM_THREADS,), args)


@kernel_op
def kernel_up_conv2x2_grad_weight(be, x, gy, *, version=None):
    launch = pick("up_conv2x2_grad_weight", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = gy.shape[1]
    check_int32_size("up_conv2x2_grad_weight", gy.shape)
    gw = be.empty((Ci, Co, 2, 2), x.dtype)
    if gw.size:  # an empty x still launches: its blocks write zeros
        launch(be, x, gy, gw, i32(N, Ci, H, W, Co))
    return gw


@launcher
def up_conv2x2_grad_weight_v1(be, x, gy, gw, dims):
    """One block per (in, out) channel pair: it sums over every pixel."""
    Ci, Co = gw.shape[:2]
    threads = UP_CONV2X2.UP_CONV2X2_GW_THREADS
    be.launch("up_conv2x2", "up_conv2x2_grad_weight_v1", x.dtype, (Ci * Co,), (threads,), (x, gy, gw) + dims)


@launcher
def up_conv2x2_grad_weight_v2(be, x, gy, gw, dims):
    """gw (Ci x Co*2*2) = x . gy's 2x2 blocks^T, a sum over every input pixel: split-K (launching.launch_split_k)."""
    Ci, Co = gw.shape[:2]
    launch_split_k(be, "up_conv2x2", "up_conv2x2_grad_weight_v2", (x, gy), gw, dims, Ci, 4 * Co, x[:, 0].size,
                   UP_CONV2X2.MINUNET_GEMM_BM, UP_CONV2X2.MINUNET_GEMM_BN)
