"""conv1x1: 1x1 convolution, a per-pixel linear map of the channels (the U-Net's output layer); every Python
part of it.

    y[n,o,i,j] = sum_c x[n,c,i,j] w[o,c] + b[o]          w: (Co, Ci, 1, 1)

In order: the user function conv1x1 and its autograd Function; the numpy device (one matrix product per
image: y[n] = W (Co,Ci) @ x[n] (Ci,H*W), BLAS does the work); the launches of kernels/conv1x1.cu for cuda and
sim, whose rows are in launch_table.py.
"""
from ..tensor import Function
from .checks import add_bias, bias_args, check_tensor, check_weight_bias, flat, grads_for, tensors
from .launching import PER_ELEMENT, PER_WEIGHT, check_int32_size, i32, launch_blocks, launch_gemm, \
    launch_per_element, launch_split_k, pick


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
def numpy_conv1x1(x, w, b):
    N, _, H, W = x.shape
    y = w.reshape(w.shape[0], -1) @ flat(x)
    return add_bias(y.reshape(N, w.shape[0], H, W), b)


def numpy_conv1x1_grad_input(gy, w):
    N, _, H, W = gy.shape
    gx = w.reshape(w.shape[0], -1).T @ flat(gy)
    return gx.reshape(N, w.shape[1], H, W)


def numpy_conv1x1_grad_weight(x, gy):
    gw = (flat(gy) @ flat(x).transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(gy.shape[1], x.shape[1], 1, 1)


# -- the kernel devices (cuda, sim): kernels/conv1x1.cu, each launch as its row in launch_table.py says -----
def kernel_conv1x1(be, x, w, b, *, version=None):
    row = pick("conv1x1", "forward", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    check_int32_size("conv1x1", x.shape, (N, Co, H, W))
    y = be.empty((N, Co, H, W), x.dtype)
    bias, has_bias = bias_args(w, b)
    args = (x, w, bias, y) + i32(N, Ci, H * W, Co) + (has_bias,)
    if row.grid == PER_ELEMENT:
        launch_per_element(be, row, x.dtype, y.size, args)
    else:
        launch_gemm(be, row, x.dtype, Co, N * H * W, args)
    return y


def kernel_conv1x1_grad_input(be, gy, w, *, version=None):
    row = pick("conv1x1", "grad_input", version, gy.dtype, be)
    N, Co, H, W = gy.shape
    Ci = w.shape[1]
    check_int32_size("conv1x1_grad_input", gy.shape, (N, Ci, H, W))
    gx = be.empty((N, Ci, H, W), gy.dtype)
    args = (gy, w, gx) + i32(N, Ci, H * W, Co)
    if row.grid == PER_ELEMENT:
        launch_per_element(be, row, gy.dtype, gx.size, args)
    else:
        launch_gemm(be, row, gy.dtype, Ci, N * H * W, args)
    return gx


def kernel_conv1x1_grad_weight(be, x, gy, *, version=None):
    row = pick("conv1x1", "grad_weight", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = gy.shape[1]
    check_int32_size("conv1x1_grad_weight", x.shape, gy.shape)
    gw = be.empty((Co, Ci, 1, 1), x.dtype)
    if not gw.size:
        return gw
    if row.grid == PER_WEIGHT:
        launch_blocks(be, row, x.dtype, Co * Ci, (x, gy, gw) + i32(N, Ci, H * W, Co))
    else:
        launch_split_k(be, row, x, gw, Co, Ci, N * H * W, lambda out: (x, gy, out) + i32(N, Ci, H * W, Co))
    return gw
