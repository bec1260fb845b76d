"""conv1x1: 1x1 convolution, a per-pixel linear map of the channels (the U-Net's output layer); every Python
part of it.

    y[n,o,i,j] = sum_c x[n,c,i,j] w[o,c] + b[o]          w: (Co, Ci, 1, 1)

In order: the user function conv1x1 and its autograd Function; the numpy device (one matrix product per
image: y[n] = W (Co,Ci) @ x[n] (Ci,H*W), BLAS does the work); the launches of kernels/conv1x1.cu for cuda and
sim, one launcher per kernel version, named as its kernel.
"""
from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function
from .checks import add_bias, bias_args, check_tensor, check_weight_bias, flat, grads_for, tensors
from .launching import KernelDefines, cdiv, check_int32_size, i32, launch_split_k, launcher, pick


# -- the user function and its autograd Function ---------------------------------------------------------
class _Conv1x1(Function):
    @staticmethod
    def forward(ctx, x, w, *b):
        ctx.save_for_backward(x, w)
        return ctx.backend.conv1x1(x, w, b[0] if b else None)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        be = ctx.backend
        return grads_for(ctx, lambda: be.conv1x1_grad_input(gy, w),
                         lambda: be.conv1x1_grad_weight(x, gy), lambda: be.bias_grad(gy))


def conv1x1(x, w, b=None):
    """1x1 convolution: a per-pixel linear map of the channels (the U-Net's output layer)."""
    check_tensor("conv1x1", "x", x, 4, "(N, Cin, H, W)")
    check_weight_bias("conv1x1", x, w, b, (None, x.shape[1], 1, 1))
    return _Conv1x1.apply(x, w, *tensors(b))


# -- the numpy device ------------------------------------------------------------------------------------
@numpy_op
def numpy_conv1x1(x, w, b):
    N, _, H, W = x.shape
    y = w.reshape(w.shape[0], -1) @ flat(x)
    return add_bias(y.reshape(N, w.shape[0], H, W), b)


@numpy_op
def numpy_conv1x1_grad_input(gy, w):
    N, _, H, W = gy.shape
    gx = w.reshape(w.shape[0], -1).T @ flat(gy)
    return gx.reshape(N, w.shape[1], H, W)


@numpy_op
def numpy_conv1x1_grad_weight(x, gy):
    gw = (flat(gy) @ flat(x).transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(gy.shape[1], x.shape[1], 1, 1)


# -- the kernel devices (cuda, sim): kernels/conv1x1.cu, one launcher per kernel version, named as its kernel -
CONV1X1 = KernelDefines("conv1x1.cu")


@kernel_op
def kernel_conv1x1(be, x, w, b, *, version=None):
    launch = pick("conv1x1_forward", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    check_int32_size("conv1x1", x.shape, (N, Co, H, W))
    y = be.empty((N, Co, H, W), x.dtype)
    bias, has_bias = bias_args(w, b)
    launch(be, (x, w, bias, y) + i32(N, Ci, H * W, Co) + (has_bias,), y)
    return y


@launcher
def conv1x1_forward_v1(be, args, y):
    """One thread per output element."""
    threads = CONV1X1.MINUNET_THREADS
    be.launch("conv1x1", "conv1x1_forward_v1", y.dtype, (cdiv(y.size, threads),), (threads,), args)


@launcher
def conv1x1_forward_v2(be, args, y):
    """GEMM: y (Co x N*H*W) = w . x, a BM x BN block tile each (columns in grid x)."""
    BM, BN = CONV1X1.MINUNET_GEMM_BM, CONV1X1.MINUNET_GEMM_BN
    grid = (cdiv(y[:, 0].size, BN), cdiv(y.shape[1], BM))
    be.launch("conv1x1", "conv1x1_forward_v2", y.dtype, grid, (CONV1X1.MINUNET_GEMM_THREADS,), args)


@kernel_op
def kernel_conv1x1_grad_input(be, gy, w, *, version=None):
    launch = pick("conv1x1_grad_input", version, gy.dtype, be)
    N, Co, H, W = gy.shape
    Ci = w.shape[1]
    check_int32_size("conv1x1_grad_input", gy.shape, (N, Ci, H, W))
    gx = be.empty((N, Ci, H, W), gy.dtype)
    launch(be, (gy, w, gx) + i32(N, Ci, H * W, Co), gx)
    return gx


@launcher
def conv1x1_grad_input_v1(be, args, gx):
    """One thread per element of gx."""
    threads = CONV1X1.MINUNET_THREADS
    be.launch("conv1x1", "conv1x1_grad_input_v1", gx.dtype, (cdiv(gx.size, threads),), (threads,), args)


@launcher
def conv1x1_grad_input_v2(be, args, gx):
    """GEMM: gx (Ci x N*H*W) = w^T . gy, a BM x BN block tile each."""
    BM, BN = CONV1X1.MINUNET_GEMM_BM, CONV1X1.MINUNET_GEMM_BN
    grid = (cdiv(gx[:, 0].size, BN), cdiv(gx.shape[1], BM))
    be.launch("conv1x1", "conv1x1_grad_input_v2", gx.dtype, grid, (CONV1X1.MINUNET_GEMM_THREADS,), args)


@kernel_op
def kernel_conv1x1_grad_weight(be, x, gy, *, version=None):
    launch = pick("conv1x1_grad_weight", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = gy.shape[1]
    check_int32_size("conv1x1_grad_weight", x.shape, gy.shape)
    gw = be.empty((Co, Ci, 1, 1), x.dtype)
    if gw.size:  # an empty gy still launches: its blocks write zeros
        launch(be, x, gy, gw, i32(N, Ci, H * W, Co))
    return gw


@launcher
def conv1x1_grad_weight_v1(be, x, gy, gw, dims):
    """One block per (out, in) channel pair: it sums over every pixel."""
    Co, Ci = gw.shape[:2]
    threads = CONV1X1.CONV1X1_GW_THREADS
    be.launch("conv1x1", "conv1x1_grad_weight_v1", x.dtype, (Co * Ci,), (threads,), (x, gy, gw) + dims)


@launcher
def conv1x1_grad_weight_v2(be, x, gy, gw, dims):
    """gw (Co x Ci) = gy . x^T, a sum over every pixel: split-K (launching.launch_split_k)."""
    Co, Ci = gw.shape[:2]
    launch_split_k(be, "conv1x1", "conv1x1_grad_weight_v2", (x, gy), gw, dims, Co, Ci, x[:, 0].size,
                   CONV1X1.MINUNET_GEMM_BM, CONV1X1.MINUNET_GEMM_BN)
