"""up_conv2x2: 2x2 up-convolution (transposed convolution, stride 2), doubling H and W; every Python part of it.

    y[n,o,2i+a,2j+c] = sum_ci x[n,ci,i,j] w[ci,o,a,c] + b[o]          w: (Ci, Co, 2, 2), PyTorch's layout

In order: the user function up_conv2x2 and its autograd Function; the numpy device; the launches of
kernels/up_conv2x2.cu for cuda and sim, whose rows are in launch_table.py.

The numpy path: each input pixel writes 4 disjoint output pixels, so the op is one product
(Co*2*2, Ci) @ (Ci, H*W) followed by a reshape/transpose that interleaves the 2x2 blocks; the backward ops are
its transposes.
"""
import numpy as np

from ..tensor import Function
from .checks import add_bias, bias_args, check_tensor, check_weight_bias, flat, grads_for, tensors
from .launching import PER_ELEMENT, PER_WEIGHT, check_int32_size, i32, launch_blocks, launch_gemm, \
    launch_per_element, launch_split_k, pick


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
def numpy_up_conv2x2(x, w, b):
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    # (Co*2*2, Ci) @ (Ci, H*W): row (o,a,c) holds the output pixels y[o, 2i+a, 2j+c] for all (i,j).
    blocks = w.reshape(Ci, Co * 4).T @ flat(x)
    y = blocks.reshape(N, Co, 2, 2, H, W).transpose(0, 1, 4, 2, 5, 3).reshape(N, Co, 2 * H, 2 * W)
    return add_bias(np.ascontiguousarray(y), b)


def _split_2x2_blocks(gy):
    """(N, Co, 2H, 2W) -> (N, Co*2*2, H*W): the inverse of up_conv2x2's interleave."""
    N, Co, H2, W2 = gy.shape
    H, W = H2 // 2, W2 // 2
    return gy.reshape(N, Co, H, 2, W, 2).transpose(0, 1, 3, 5, 2, 4).reshape(N, Co * 4, H * W)


def numpy_up_conv2x2_grad_input(gy, w):
    N, _, H2, W2 = gy.shape
    Ci = w.shape[0]
    gx = w.reshape(Ci, -1) @ _split_2x2_blocks(gy)
    return gx.reshape(N, Ci, H2 // 2, W2 // 2)


def numpy_up_conv2x2_grad_weight(x, gy):
    Ci, Co = x.shape[1], gy.shape[1]
    gw = (flat(x) @ _split_2x2_blocks(gy).transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(Ci, Co, 2, 2)


# -- the kernel devices (cuda, sim): kernels/up_conv2x2.cu, each launch as its row in launch_table.py says --
def kernel_up_conv2x2(be, x, w, b, *, version=None):
    row = pick("up_conv2x2", "forward", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    check_int32_size("up_conv2x2", (N, Co, 2 * H, 2 * W))
    y = be.empty((N, Co, 2 * H, 2 * W), x.dtype)
    bias, has_bias = bias_args(w, b)
    args = (x, w, bias, y) + i32(N, Ci, H, W, Co) + (has_bias,)
    if row.grid == PER_ELEMENT:
        launch_per_element(be, row, x.dtype, y.size, args)
    else:
        launch_gemm(be, row, x.dtype, 4 * Co, N * H * W, args)
    return y


def kernel_up_conv2x2_grad_input(be, gy, w, *, version=None):
    row = pick("up_conv2x2", "grad_input", version, gy.dtype, be)
    N, Co, H2, W2 = gy.shape
    Ci = w.shape[0]
    check_int32_size("up_conv2x2_grad_input", gy.shape)
    gx = be.empty((N, Ci, H2 // 2, W2 // 2), gy.dtype)
    args = (gy, w, gx) + i32(N, Ci, H2 // 2, W2 // 2, Co)
    if row.grid == PER_ELEMENT:
        launch_per_element(be, row, gy.dtype, gx.size, args)
    else:
        launch_gemm(be, row, gy.dtype, Ci, gx[:, 0].size, args)
    return gx


def kernel_up_conv2x2_grad_weight(be, x, gy, *, version=None):
    row = pick("up_conv2x2", "grad_weight", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = gy.shape[1]
    check_int32_size("up_conv2x2_grad_weight", gy.shape)
    gw = be.empty((Ci, Co, 2, 2), x.dtype)
    if not gw.size:
        return gw
    if row.grid == PER_WEIGHT:
        launch_blocks(be, row, x.dtype, Ci * Co, (x, gy, gw) + i32(N, Ci, H, W, Co))
    else:
        launch_split_k(be, row, x, gw, Ci, 4 * Co, N * H * W, lambda out: (x, gy, out) + i32(N, Ci, H, W, Co))
    return gw
