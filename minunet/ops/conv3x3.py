"""conv3x3: 3x3 convolution, stride 1, padding 0 ("valid", the paper's) or 1 ("same"); every Python part of it.

    y[n,o,i,j] = sum_{c,ky,kx} xpad[n,c,i+ky,j+kx] w[o,c,ky,kx] + b[o]      (cross-correlation, as PyTorch)

In order: the user function conv3x3 (its argument checks) and its autograd Function; the numpy device's fast
path (numpy_conv3x3, ..._grad_input, ..._grad_weight); the launches of kernels/conv3x3.cu for cuda and sim
(kernel_conv3x3, ...) and one launcher per kernel version, named as its kernel (conv3x3_forward_v3).

The numpy path is a handful of matrix products so BLAS does the work: the sum over the 9 taps of one product
each, with the input window the tap sees. The windows are not copied: on the flattened image (Ci, H*W) output
pixel (i, j) reads tap (ky, kx) at flat index (i*W + j) + (ky*W + kx), so if the output is computed on a "wide"
grid of Ho rows of W (not Wo) pixels, each tap's window is the plain slice [ky*W + kx, ... + L) of the flat
image, which BLAS reads in place. The wide grid's last W - Wo columns of each row are wrapped-around garbage,
cropped at the end (and zero in the backward passes' gy, so that they add nothing). With few input channels
(the first layer) the 9 slices are stacked into one im2col matrix: one product with K = 9*Ci instead of nine
with K = Ci, which BLAS does badly. The backward ops are the exact transposes of these products
(tests/test_conv3x3.py checks it with dot-product tests). The dtype of x is kept (float32 or float64).
"""
import numpy as np

from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function
from .checks import add_bias, bias_args, check_tensor, check_weight_bias, flat, grads_for, tensors
from .launching import KernelDefines, cdiv, check_grid_yz, check_int32_size, i32, launch_split_k, launcher, pick

PADDING = {"valid": 0, "same": 1}


# -- the user function and its autograd Function ---------------------------------------------------------
class _Conv3x3(Function):
    @staticmethod
    def forward(ctx, x, w, *b, pad, relu):
        y = ctx.backend.conv3x3(x, w, b[0] if b else None, pad, relu=relu)
        ctx.save_for_backward(x, w, y if relu else None)
        ctx.pad, ctx.x_shape, ctx.relu = pad, x.shape, relu
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w, y = ctx.saved_tensors
        be = ctx.backend
        if ctx.relu:  # through the fused ReLU first: gradient only where the output is positive
            gy = be.relu_grad(gy, y)
        return grads_for(ctx, lambda: be.conv3x3_grad_input(gy, w, ctx.pad, ctx.x_shape),
                         lambda: be.conv3x3_grad_weight(x, gy, ctx.pad), lambda: be.bias_grad(gy))


def conv3x3(x, w, b=None, padding="valid", relu=False):
    """3x3 convolution, stride 1. padding "valid" (the paper's: output 2 px smaller) or "same".

    relu=True computes relu(conv3x3(x, w, b)) in one step: on cuda/sim the bias and ReLU are applied in the
    kernel's epilogue, before the single write of the output (one pass over the activation instead of two).
    """
    check_tensor("conv3x3", "x", x, 4, "(N, Cin, H, W)")
    if padding not in PADDING:
        raise ValueError(f"conv3x3: padding must be 'valid' or 'same', got {padding!r}")
    check_weight_bias("conv3x3", x, w, b, (None, x.shape[1], 3, 3))
    if padding == "valid" and min(x.shape[2:]) < 3:
        raise ValueError(f"conv3x3: a valid 3x3 convolution needs H, W >= 3, got x of shape {x.shape}")
    return _Conv3x3.apply(x, w, *tensors(b), pad=PADDING[padding], relu=bool(relu))


# -- the numpy device ------------------------------------------------------------------------------------
TAPS = [(ky, kx) for ky in range(3) for kx in range(3)]
IM2COL_MAX_K = 32  # conv3x3 forward: stack the taps into one product when 9*Ci is at most this


def _pad(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _wide_length(W, Ho, Wo):
    """Flat length of the wide grid up to the last real output pixel; tap (ky, kx) starts at ky*W + kx."""
    return (Ho - 1) * W + Wo


def _to_wide(gy, W):
    """gy (N, Co, Ho, Wo) -> (N, Co, L) on the wide grid of row length W, zeros in the garbage columns."""
    N, Co, Ho, Wo = gy.shape
    wide = np.zeros((N, Co, Ho, W), gy.dtype)
    wide[..., :Wo] = gy
    return wide.reshape(N, Co, Ho * W)[:, :, :_wide_length(W, Ho, Wo)]


@numpy_op
def numpy_conv3x3(x, w, b, pad, relu=False):
    """relu=True returns max(conv3x3(x, w, b), 0): the fused bias + ReLU of the kernels' epilogue."""
    xp = _pad(x, pad)
    N, Ci, H, W = xp.shape
    Co, Ho, Wo = w.shape[0], max(H - 2, 0), max(W - 2, 0)
    yw = np.zeros((N, Co, Ho * W), x.dtype)
    if Ho and Wo:
        L, xf = _wide_length(W, Ho, Wo), flat(xp)
        if 9 * Ci <= IM2COL_MAX_K:
            cols = np.stack([xf[:, :, ky * W + kx:ky * W + kx + L] for ky, kx in TAPS], axis=2)
            yw[:, :, :L] = w.reshape(Co, -1) @ cols.reshape(N, Ci * 9, L)  # rows (c, ky, kx), as w's
        else:
            for ky, kx in TAPS:
                yw[:, :, :L] += w[:, :, ky, kx] @ xf[:, :, ky * W + kx:ky * W + kx + L]
    y = add_bias(np.ascontiguousarray(yw.reshape(N, Co, Ho, W)[..., :Wo]), b)
    return np.maximum(y, 0, out=y) if relu else y


@numpy_op
def numpy_conv3x3_grad_input(gy, w, pad, x_shape):
    # Each tap's window received w[:, :, ky, kx] @ window: send gy back through the transpose.
    N, Ci, H, W = x_shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    _, _, Ho, Wo = gy.shape
    gxp = np.zeros((N, Ci, Hp * Wp), gy.dtype)
    if Ho and Wo:
        L, g = _wide_length(Wp, Ho, Wo), _to_wide(gy, Wp)
        for ky, kx in TAPS:
            gxp[:, :, ky * Wp + kx:ky * Wp + kx + L] += w[:, :, ky, kx].T @ g
    gxp = gxp.reshape(N, Ci, Hp, Wp)
    return np.ascontiguousarray(gxp[:, :, pad:pad + H, pad:pad + W]) if pad else gxp


@numpy_op
def numpy_conv3x3_grad_weight(x, gy, pad):
    xp = _pad(x, pad)
    Ci, W = xp.shape[1], xp.shape[3]
    _, Co, Ho, Wo = gy.shape
    gw = np.zeros((Co, Ci, 3, 3), x.dtype)
    if Ho and Wo:
        L, g, xf = _wide_length(W, Ho, Wo), _to_wide(gy, W), flat(xp)
        for ky, kx in TAPS:
            gw[:, :, ky, kx] = (g @ xf[:, :, ky * W + kx:ky * W + kx + L].transpose(0, 2, 1)).sum(axis=0)
    return gw


# -- the kernel devices (cuda, sim): kernels/conv3x3.cu -----------------------------------------------------
# kernel_conv3x3 & co. check the sizes, allocate the output and pick a launcher; each launcher below is named as
# its kernel and holds its launch. The tile sizes are the .cu file's #defines, read once.
CONV3X3 = KernelDefines("conv3x3.cu")


@kernel_op
def kernel_conv3x3(be, x, w, b, pad, *, version=None, relu=False):
    """relu=True returns max(conv3x3(x, w, b), 0): fused into the epilogue of the GEMM versions (v3-v5), a
    separate relu launch for the others."""
    launch = pick("conv3x3_forward", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    Ho, Wo = max(H - 2 + 2 * pad, 0), max(W - 2 + 2 * pad, 0)
    check_int32_size("conv3x3", x.shape, (N, Co, Ho, Wo))
    y = be.empty((N, Co, Ho, Wo), x.dtype)
    if y.size == 0:
        return y
    bias, has_bias = bias_args(w, b)
    return launch(be, (x, w, bias, y) + i32(N, Ci, H, W, Co, pad) + (has_bias,), y, relu)


@launcher
def conv3x3_forward_v1(be, args, y, relu):
    """One thread per output element."""
    threads = CONV3X3.MINUNET_THREADS
    be.launch("conv3x3", "conv3x3_forward_v1", y.dtype, (cdiv(y.size, threads),), (threads,), args)
    return be.relu(y) if relu else y


@launcher
def conv3x3_forward_v2(be, args, y, relu):
    """A TILE x TILE block per output tile and group of COUT channels."""
    T, COUT = CONV3X3.CONV3X3_V2_TILE, CONV3X3.CONV3X3_V2_COUT
    N, Co, Ho, Wo = y.shape
    grid = (cdiv(Wo, T), cdiv(Ho, T), N * cdiv(Co, COUT))
    check_grid_yz("conv3x3_forward_v2", grid)
    be.launch("conv3x3", "conv3x3_forward_v2", y.dtype, grid, (T, T), args)
    return be.relu(y) if relu else y


# v3-v5: the implicit GEMM y (Co x N*Ho*Wo) = w (Co x 9*Ci) . im2col(x), a BM x BN block tile each (columns in
# grid x), bias and ReLU in the epilogue.
@launcher
def conv3x3_forward_v3(be, args, y, relu):
    BM, BN = CONV3X3.CONV3X3_V3_BM, CONV3X3.CONV3X3_V3_BN
    grid = (cdiv(y[:, 0].size, BN), cdiv(y.shape[1], BM))
    be.launch("conv3x3", "conv3x3_forward_v3", y.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args + i32(relu))
    return y


@launcher
def conv3x3_forward_v4(be, args, y, relu):
    BM, BN = CONV3X3.CONV3X3_V4_BM, CONV3X3.CONV3X3_V4_BN
    grid = (cdiv(y[:, 0].size, BN), cdiv(y.shape[1], BM))
    be.launch("conv3x3", "conv3x3_forward_v4", y.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args + i32(relu))
    return y


@launcher(tf32=True)
def conv3x3_forward_v5(be, args, y, relu):
    BM, BN = CONV3X3.CONV3X3_V5_BM, CONV3X3.CONV3X3_V5_BN
    grid = (cdiv(y[:, 0].size, BN), cdiv(y.shape[1], BM))
    be.launch("conv3x3", "conv3x3_forward_v5", y.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args + i32(relu))
    return y


@kernel_op
def kernel_conv3x3_grad_input(be, gy, w, pad, x_shape, *, version=None):
    launch = pick("conv3x3_grad_input", version, gy.dtype, be)
    N, Ci, H, W = x_shape
    check_int32_size("conv3x3_grad_input", x_shape, gy.shape)
    gx = be.empty(tuple(x_shape), gy.dtype)
    launch(be, (gy, w, gx) + i32(N, Ci, H, W, w.shape[0], pad), gx)
    return gx


@launcher
def conv3x3_grad_input_v1(be, args, gx):
    """One thread per element of gx."""
    threads = CONV3X3.MINUNET_THREADS
    be.launch("conv3x3", "conv3x3_grad_input_v1", gx.dtype, (cdiv(gx.size, threads),), (threads,), args)


@launcher
def conv3x3_grad_input_v2(be, args, gx):
    """A TILE x TILE block per tile of gx and group of COUT input channels."""
    T, COUT = CONV3X3.CONV3X3_V2_TILE, CONV3X3.CONV3X3_V2_COUT
    N, Ci, H, W = gx.shape
    grid = (cdiv(W, T), cdiv(H, T), N * cdiv(Ci, COUT))
    check_grid_yz("conv3x3_grad_input_v2", grid)
    be.launch("conv3x3", "conv3x3_grad_input_v2", gx.dtype, grid, (T, T), args)


# v3-v5: gx (Ci x N*H*W) = flipped, transposed w . gy's windows, a BM x BN block tile each
@launcher
def conv3x3_grad_input_v3(be, args, gx):
    BM, BN = CONV3X3.CONV3X3_V3_BM, CONV3X3.CONV3X3_V3_BN
    grid = (cdiv(gx[:, 0].size, BN), cdiv(gx.shape[1], BM))
    be.launch("conv3x3", "conv3x3_grad_input_v3", gx.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args)


@launcher
def conv3x3_grad_input_v4(be, args, gx):
    BM, BN = CONV3X3.CONV3X3_V4_BM, CONV3X3.CONV3X3_V4_BN
    grid = (cdiv(gx[:, 0].size, BN), cdiv(gx.shape[1], BM))
    be.launch("conv3x3", "conv3x3_grad_input_v4", gx.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args)


@launcher(tf32=True)
def conv3x3_grad_input_v5(be, args, gx):
    BM, BN = CONV3X3.CONV3X3_V5_BM, CONV3X3.CONV3X3_V5_BN
    grid = (cdiv(gx[:, 0].size, BN), cdiv(gx.shape[1], BM))
    be.launch("conv3x3", "conv3x3_grad_input_v5", gx.dtype, grid, (CONV3X3.MINUNET_GEMM_THREADS,), args)


@kernel_op
def kernel_conv3x3_grad_weight(be, x, gy, pad, *, version=None):
    launch = pick("conv3x3_grad_weight", version, x.dtype, be)
    N, Ci, H, W = x.shape
    Co = gy.shape[1]
    check_int32_size("conv3x3_grad_weight", x.shape, gy.shape)
    gw = be.empty((Co, Ci, 3, 3), x.dtype)
    if gw.size:  # an empty gy still launches: its blocks write zeros
        launch(be, x, gy, gw, i32(N, Ci, H, W, Co, pad))
    return gw


@launcher
def conv3x3_grad_weight_v1(be, x, gy, gw, dims):
    """One block per (out, in) channel pair: it sums over every pixel."""
    Co, Ci = gw.shape[:2]
    threads = CONV3X3.CONV3X3_GW_THREADS
    be.launch("conv3x3", "conv3x3_grad_weight_v1", x.dtype, (Co * Ci,), (threads,), (x, gy, gw) + dims)


@launcher
def conv3x3_grad_weight_v2(be, x, gy, gw, dims):
    """One block per out channel and group of CIN in channels."""
    Co, Ci = gw.shape[:2]
    T, CIN = CONV3X3.CONV3X3_V2_TILE, CONV3X3.CONV3X3_GW_V2_CIN
    be.launch("conv3x3", "conv3x3_grad_weight_v2", x.dtype, (Co * cdiv(Ci, CIN),), (T, T), (x, gy, gw) + dims)


# v3-v5: gw (Co x 9*Ci) = gy . im2col(x)^T, a sum over every pixel: split-K (launching.launch_split_k)
@launcher
def conv3x3_grad_weight_v3(be, x, gy, gw, dims):
    Co, Ci = gw.shape[:2]
    launch_split_k(be, "conv3x3", "conv3x3_grad_weight_v3", (x, gy), gw, dims, Co, Ci * 9, gy[:, 0].size,
                   CONV3X3.CONV3X3_V3_BM, CONV3X3.CONV3X3_V3_BN)


@launcher
def conv3x3_grad_weight_v4(be, x, gy, gw, dims):
    Co, Ci = gw.shape[:2]
    launch_split_k(be, "conv3x3", "conv3x3_grad_weight_v4", (x, gy), gw, dims, Co, Ci * 9, gy[:, 0].size,
                   CONV3X3.CONV3X3_V4_BM, CONV3X3.CONV3X3_V4_BN)


@launcher(tf32=True)
def conv3x3_grad_weight_v5(be, x, gy, gw, dims):
    Co, Ci = gw.shape[:2]
    launch_split_k(be, "conv3x3", "conv3x3_grad_weight_v5", (x, gy), gw, dims, Co, Ci * 9, gy[:, 0].size,
                   CONV3X3.CONV3X3_V5_BM, CONV3X3.CONV3X3_V5_BN)
