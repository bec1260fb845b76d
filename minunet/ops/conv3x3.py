"""conv3x3: 3x3 convolution, stride 1, padding 0 ("valid", the paper's) or 1 ("same"); every Python part of it.

    y[n,o,i,j] = sum_{c,ky,kx} xpad[n,c,i+ky,j+kx] w[o,c,ky,kx] + b[o]      (cross-correlation, as PyTorch)

In order: the user function conv3x3 (its argument checks) and its autograd Function; the numpy device's fast
path (numpy_conv3x3, ..._grad_input, ..._grad_weight); the launches of kernels/conv3x3.cu for cuda and sim
(kernel_conv3x3, ...) and one launcher per kernel version, named as its kernel (conv3x3_forward_v3).

The numpy path hands the sums to BLAS, in bands of output rows that the device's threads share
(minunet/threads.py), with one of several algorithms per layer and direction: nine products, one per tap
(the algorithm before #25); one product with an im2col matrix; direct multiply-adds for one input channel.
Which is fastest depends on the layer's shape and the machine, so the first call of each shape times them all
and keeps the fastest (minunet/ops/choice.py; MINUNET_CONV_ALGO=<name> forces one). grad_input is the
forward's algorithms applied to gy, padded, with the kernel flipped; grad_weight has its own four. The dtype
of x is kept (float32 or float64), and the bands' sizes do not depend on the thread count, so neither do the
results.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import threads
from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function
from . import choice
from .blas import shifted_products
from .checks import bias_args, check_tensor, check_weight_bias, tensors
from .elementwise import keep_where
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
        x, w, y = ctx.saved_tensors  # y: the output, saved where the ReLU is fused (None otherwise)
        return ctx.backend.conv3x3_backward(gy, x, w, y, ctx.pad, ctx.needs_input_grad)


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


# Each algorithm computes one band of output rows of one image, given the padded image x_n (Ci, H, W): the sum
# without bias, written into `out` (Co, rows, Wo), a view of y, or returned in an array of its own of that shape
# (then the bias is added as it is copied in: one pass fewer). All of them add the same 9*Ci products per
# output in another order, so each is within the usual bound of such a sum, |error| <= 9*Ci*u*sum|x*w| (u: the
# dtype's unit roundoff, 2^-24 or 2^-53); tests/test_conv3x3.py checks each in float32 and float64.
def _taps(x_n, w, r0, rows, out):
    """One product per tap (ky, kx), w[:, :, ky, kx] (Co, Ci) times the window the tap sees (K = Ci), added up by
    BLAS itself (ops/blas.py). On the flattened image the window of a "wide" band (rows of W, not Wo, pixels) is
    the plain slice starting at (r0 + ky)*W + kx, which BLAS reads in place; the band's last W - Wo columns of
    each row are wrapped-around garbage, left out of the view returned."""
    Ci, H, W = x_n.shape
    Wo = W - 2
    per_tap = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(9, -1, Ci)  # each tap's matrix (Co, Ci)
    wide = np.empty((w.shape[0], rows * W), x_n.dtype)
    shifted_products(per_tap, x_n.reshape(Ci, H * W), [(r0 + ky) * W + kx for ky, kx in TAPS],
                     wide[:, :(rows - 1) * W + Wo])
    return wide.reshape(-1, rows, W)[..., :Wo]


def _windows(x_n, r0, rows):
    """(Ci, 3, 3, rows, Wo), a view: [c, ky, kx, i, j] = x_n[c, r0 + i + ky, j + kx], every tap's window of the
    band (numpy's sliding_window_view, without its checks: they cost as much as a small band's copy)."""
    Ci, H, W = x_n.shape
    c, y, x = x_n.strides
    return as_strided(x_n[:, r0:], (Ci, 3, 3, rows, W - 2), (c, y, x, y, x), writeable=False)


def _im2col(x_n, r0, rows):
    """(Ci*9, rows*Wo), a copy: row (c, ky, kx) in w's order, column (i, j) holds x_n[c, r0 + i + ky, j + kx]."""
    windows = _windows(x_n, r0, rows)
    Ci, _, _, _, Wo = windows.shape
    return windows.reshape(Ci * 9, rows * Wo)


def _im2col_product(x_n, w, r0, rows, out):
    """The band's 9*Ci input values under each output pixel copied into one matrix (im2col), then one product
    with K = 9*Ci: BLAS works best with a large K, and the copy of a band stays in cache."""
    Co = w.shape[0]
    np.matmul(w.reshape(Co, -1), _im2col(x_n, r0, rows), out=out.reshape(Co, -1))
    return out


def _direct(x_n, w, r0, rows, out):
    """One input channel: 9 multiply-adds of a whole band per output channel, w[o, 0, ky, kx] * window, where a
    product with K = 1 would leave BLAS nothing to do."""
    _, H, W = x_n.shape
    Wo = W - 2
    xf, L = x_n.reshape(H * W), (rows - 1) * W + Wo
    wide = np.empty((w.shape[0], rows * W), x_n.dtype)
    for t, (ky, kx) in enumerate(TAPS):
        start = (r0 + ky) * W + kx
        product = w[:, 0, ky, kx, None] * xf[None, start:start + L]
        if t == 0:
            wide[:, :L] = product
        else:
            wide[:, :L] += product
    return wide.reshape(-1, rows, W)[..., :Wo]


# name: (the band's function, the values its working set holds per output pixel: im2col's matrix, or the wide band)
FORWARD = {"taps": (_taps, lambda Ci, Co: Co), "im2col": (_im2col_product, lambda Ci, Co: 9 * Ci),
           "direct": (_direct, lambda Ci, Co: Co)}


def _applying(algorithms, Ci):
    return {name: a for name, a in algorithms.items() if name != "direct" or Ci == 1}


BAND_BYTES = 1 << 20  # a band's working set: about 1 MiB, so that it is still in cache for the next pass over it


def _bands(N, Ho, row_bytes):
    """[(image, first output row, rows)]: the slices of work that the device's threads share, k bands of equal
    height per image, each about BAND_BYTES. Their size does not depend on the thread count, so neither do the
    results; an even number of them in all (unless one) keeps two threads equally busy: one image of the
    188 px tile in 3 bands left one of 2 threads idle a third of the time (a training step 3.5% slower)."""
    k = max(1, min(Ho, -(-Ho * row_bytes // BAND_BYTES)))
    if N * k % 2 and (N * k > 1 or Ho >= 16):  # one image of 16 rows or more: split in two as well
        k = min(k + 1, Ho)
    rows = max(1, -(-Ho // k))
    return [(n, r0, min(rows, Ho - r0)) for n in range(N) for r0 in range(0, Ho, rows)]


def _forward(op, layer, x, w, b, pad, relu):
    """y = conv3x3(x, w, b) band by band with the algorithm chosen for the layer's shapes (N, Ci, H, W, Co, pad),
    bias and ReLU applied to each band while it is in cache. Also the grad_input (below), on other operands."""
    xp = _pad(x, pad)
    return choice.choose(op, _applying(FORWARD, xp.shape[1]), layer, x.dtype,
                         lambda algorithm: _run(*_forward_bands(algorithm, xp, w, b, relu)))


def _run(result, band, count, finish=lambda result: result):
    threads.parallel(band, count)
    return finish(result)


def _forward_bands(algorithm_and_size, xp, w, b, relu):
    """(y, band, count): band(i) for i in range(count) computes y, a band each (a plan, run by _run or, in the
    backward, with grad_weight's bands)."""
    algorithm, per_pixel = algorithm_and_size
    N, Ci, H, W = xp.shape
    Co, Ho, Wo = w.shape[0], max(H - 2, 0), max(W - 2, 0)
    y = np.empty((N, Co, Ho, Wo), xp.dtype)
    bands = _bands(N, Ho, per_pixel(Ci, Co) * W * xp.itemsize) if y.size else []

    def band(i):
        n, r0, rows = bands[i]
        out = y[n, :, r0:r0 + rows]
        sums = algorithm(xp[n], w, r0, rows, out)
        if b is not None:
            np.add(sums, b[:, None, None], out=out)
        elif sums is not out:
            np.copyto(out, sums)
        if relu:
            np.maximum(out, 0, out=out)
    return y, band, len(bands)


def _pad(x, pad):
    return _in_border(x, pad)[0] if pad else x


@numpy_op
def numpy_conv3x3(x, w, b, pad, relu=False):
    """relu=True returns max(conv3x3(x, w, b), 0): the fused bias + ReLU of the kernels' epilogue."""
    return _forward("conv3x3_forward", x.shape + (w.shape[0], pad), x, w, b, pad, relu)


@numpy_op
def numpy_conv3x3_grad_input(gy, w, pad, x_shape):
    """The "full" correlation of gy with the flipped kernel: x[c, i + ky, j + kx] went into y[o, i, j] through
    w[o, c, ky, kx], so gx[c, p, q] = sum gy[o, p - ky, q - kx] w[o, c, ky, kx], which is conv3x3 of gy padded
    by 2 - pad with w flipped in ky and kx and its channel axes swapped: the forward's algorithms serve."""
    return _grad_input(_pad(gy, 2 - pad), w, pad, x_shape)


def _grad_input(gy_padded, w, pad, x_shape):
    return _forward("conv3x3_grad_input", tuple(x_shape) + (w.shape[0], pad), gy_padded, _flipped(w), None, 0,
                    relu=False)  # of shape x_shape


def _flipped(w):
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


# grad_weight: gw[o, c, ky, kx] = sum over images and output pixels of gy[o, i, j] x[c, i + ky, j + kx]; each
# band's sum is a partial (Co, Ci, 3, 3), the partials added in band order. Four algorithms: per tap, im2col,
# three shifted copies (im2col's product cut in three, on a copy a third the size), direct for one channel.
def _grad_weight_taps(x_n, g, r0, rows):
    """One product per tap, gy's band (on the wide grid, zero in the garbage columns) times the transpose of
    the window the tap sees (read in place, as in _taps)."""
    Ci, H, W = x_n.shape
    Co, Wo = g.shape[0], W - 2
    xf, L = x_n.reshape(Ci, H * W), (rows - 1) * W + Wo
    wide = np.zeros((Co, rows, W), x_n.dtype)
    wide[..., :Wo] = g
    wide = wide.reshape(Co, rows * W)[:, :L]
    gw = np.empty((Co, Ci, 3, 3), x_n.dtype)
    for ky, kx in TAPS:
        start = (r0 + ky) * W + kx
        gw[:, :, ky, kx] = wide @ xf[:, start:start + L].T
    return gw


def _grad_weight_im2col(x_n, g, r0, rows):
    """One product with the band's im2col matrix: (9*Ci, pixels) times gy's band transposed (pixels, Co), the
    order of the product OpenBLAS runs fastest (1.3-1.9x the other on the U-Net's layers)."""
    Co, Ci = g.shape[0], x_n.shape[0]
    return (_im2col(x_n, r0, rows) @ g.reshape(Co, -1).T).T.reshape(Co, Ci, 3, 3)


def _grad_weight_shifts(x_n, g, r0, rows):
    """Three products, one per kernel row ky, with N = 3*Ci: the band's input rows copied three times, shifted
    by kx = 0, 1, 2 (a copy of whole runs of the flat image, 3x the band where im2col's is 9x and cut into rows),
    so that row (c, kx) of the copy, read from ky*W on, is tap (ky, kx)'s window on the wide grid; gy's band
    transposed onto that grid (zeros in its W - Wo garbage columns) is the other operand."""
    Ci, H, W = x_n.shape
    Co, Wo = g.shape[0], W - 2
    L, span = (rows - 1) * W + Wo, (rows + 1) * W + Wo  # the wide band; what ky = 0, 1, 2 read of the copy
    xf = x_n.reshape(Ci, H * W)
    shifted = np.empty((Ci, 3, span), x_n.dtype)
    np.copyto(shifted, as_strided(xf[:, r0 * W:], (Ci, 3, span), xf.strides[:1] + xf.strides[1:] * 2,
                                  writeable=False))
    shifted = shifted.reshape(3 * Ci, span)
    g_wide = np.empty((rows, W, Co), x_n.dtype)  # (pixels, Co): the order OpenBLAS runs fastest, as in im2col
    g_wide[:, :Wo] = g.transpose(1, 2, 0)
    g_wide[:, Wo:] = 0
    g_wide = g_wide.reshape(rows * W, Co)[:L]
    gw = np.empty((3, Ci, 3, Co), x_n.dtype)  # [ky, c, kx, o]
    for ky in range(3):
        np.matmul(shifted[:, ky * W:ky * W + L], g_wide, out=gw[ky].reshape(3 * Ci, Co))
    return gw.transpose(3, 1, 0, 2)


def _grad_weight_direct(x_n, g, r0, rows):
    """One input channel: per tap, gy's band times the window's pixels (a matrix-vector product)."""
    windows, g = _windows(x_n, r0, rows)[0], g.reshape(g.shape[0], -1)  # (3, 3, rows, Wo); (Co, pixels)
    gw = np.empty((g.shape[0], 1, 3, 3), x_n.dtype)
    for ky, kx in TAPS:
        gw[:, 0, ky, kx] = g @ windows[ky, kx].reshape(-1)
    return gw


GRAD_WEIGHT = {"taps": (_grad_weight_taps, lambda Ci, Co: Co), "im2col": (_grad_weight_im2col, lambda Ci, Co: 9 * Ci),
               "shifts": (_grad_weight_shifts, lambda Ci, Co: 3 * Ci + Co), "direct": (_grad_weight_direct, lambda Ci, Co: Co)}


@numpy_op
def numpy_conv3x3_grad_weight(x, gy, pad):
    xp = _pad(x, pad)
    return choice.choose("conv3x3_grad_weight", _applying(GRAD_WEIGHT, x.shape[1]), x.shape + (gy.shape[1], pad),
                         x.dtype, lambda algorithm: _run(*_grad_weight_bands(algorithm, xp, gy)))


def _grad_weight_bands(algorithm_and_size, xp, gy):
    """(parts, band, count, finish): band(i) for i in range(count) writes a band's partial sum into parts,
    finish(parts) adds them up in band order (zeros for an empty gy)."""
    algorithm, per_pixel = algorithm_and_size
    N, Ci, H, W = xp.shape
    _, Co, Ho, Wo = gy.shape
    bands = _bands(N, Ho, per_pixel(Ci, Co) * W * xp.itemsize) if gy.size else []
    parts = np.zeros((max(1, len(bands)), Co, Ci, 3, 3), xp.dtype)

    def band(i):
        n, r0, rows = bands[i]
        parts[i] = algorithm(xp[n], gy[n, :, r0:r0 + rows], r0, rows)  # gy may be a view (backward's)
    return parts, band, len(bands), lambda parts: parts.sum(axis=0)


@numpy_op
def numpy_conv3x3_backward(gy, x, w, y, pad, needs):
    """(gx, gw, gb) of conv3x3, and of its fused ReLU where y (the output) is given, None where `needs` says no
    gradient (gb only where it has a third entry: a bias). The per-direction ops above would take three passes
    over gy more: here one pass masks gy where y > 0, writes it inside the zero border grad_input pads it with
    (none where gx is not needed), and sums it per channel, the bias's gradient, while it is in cache."""
    need_x, need_w, need_b = tuple(needs) + (False,) * (3 - len(needs))
    border = 2 - pad if need_x else 0
    gb = np.zeros(gy.shape[1], gy.dtype) if need_b else None
    padded, g = _in_border(gy, border, y, gb)
    Ci, Co = x.shape[1], w.shape[0]
    chosen = (choice.known("conv3x3_grad_input", _applying(FORWARD, Co), x.shape + (Co, pad), x.dtype),
              choice.known("conv3x3_grad_weight", _applying(GRAD_WEIGHT, Ci), x.shape + (Co, pad), x.dtype))
    if need_x and need_w and None not in chosen:
        # Both algorithms known (after the first call): one parallel pass over both ops' bands, not two, so that
        # no thread waits for the last band of grad_input before grad_weight starts (one 188 px image, 2 threads:
        # a training step 5% faster; no change at 1 thread)
        gx, band_x, count_x = _forward_bands(chosen[0], padded, _flipped(w), None, False)
        parts, band_w, count_w, finish = _grad_weight_bands(chosen[1], _pad(x, pad), g)
        threads.parallel(lambda i: band_w(i) if i < count_w else band_x(i - count_w), count_w + count_x)
        return (gx, finish(parts), gb)[:len(needs)]
    gx = _grad_input(padded, w, pad, x.shape) if need_x else None
    gw = numpy_conv3x3_grad_weight(x, g, pad) if need_w else None
    return (gx, gw, gb)[:len(needs)]


def _in_border(gy, border, y=None, sums=None):
    """(padded, inner): gy inside a zero border `border` px wide (np.pad's result), where y > 0 only if y is
    given (the ReLU's gradient), and inner, the view of it without the border; its sum per channel added into
    sums unless None (the bias's gradient). One pass, by block of channels on the device's threads: each
    channel's sum is added up in the same order on any thread count. Masked and summed on contiguous arrays
    (a strided view's passes go row by row), then copied in once."""
    N, C, H, W = gy.shape
    copy = y is not None or border > 0
    padded = np.empty((N, C, H + 2 * border, W + 2 * border), gy.dtype) if copy else gy
    inner = padded[:, :, border:border + H, border:border + W]

    def channels(s):
        for n in range(N):
            if y is None:
                masked = gy[n, s]
            else:  # straight into padded where it has no border
                masked = keep_where(y[n, s] > 0, gy[n, s], out=None if border else padded[n, s])
            if sums is not None:
                sums[s] += masked.sum(axis=(1, 2))
            if border:
                edge = padded[n, s]
                edge[:, :border], edge[:, -border:], edge[:, :, :border], edge[:, :, -border:] = 0, 0, 0, 0
                np.copyto(inner[n, s], masked)
    threads.slices(channels, C, N * H * W)
    return padded, inner


choice.ALL_NAMES.update(conv3x3_forward=tuple(FORWARD), conv3x3_grad_input=tuple(FORWARD),
                        conv3x3_grad_weight=tuple(GRAD_WEIGHT))


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
def kernel_conv3x3_backward(be, gy, x, w, y, pad, needs):
    """The backward from the per-direction kernels: relu_grad first where y is given (gradient only where the
    output is positive), then each gradient that `needs` asks for."""
    if y is not None:
        gy = be.relu_grad(gy, y)
    grads = (lambda: be.conv3x3_grad_input(gy, w, pad, x.shape), lambda: be.conv3x3_grad_weight(x, gy, pad),
             lambda: be.bias_grad(gy))
    return tuple(grad() if need else None for grad, need in zip(grads, needs))


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
