"""relu, center_crop/crop, concat, dropout and bias_grad: the U-Net's plumbing; every Python part of them.

In order: the argument checks; the user functions (relu, center_crop, concat, dropout) and their autograd
Functions; the numpy device (vectorised, written to be read next to kernels/elementwise.cu: the kernels are
checked against it; each op keeps its input's dtype); the launches of kernels/elementwise.cu for cuda and sim,
one launcher per kernel, named as its kernel. crop, concat and their gradients are all one kernel, copy_window.
bias_grad is every convolution's third gradient (one reduction per channel).
"""
import numpy as np

from .. import threads
from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function
from .checks import check_like, check_real, check_same, check_tensor
from .launching import KernelDefines, cdiv, check_int32_size, i32, launcher, pick

UINT32_LIMIT = 2**32


# -- argument checks of the backend ops --------------------------------------------------------------------
def check_window(x_shape, top, left, h, w):
    """The crop window [top, top+h) x [left, left+w) must lie inside x's height and width."""
    H, W = x_shape[2], x_shape[3]
    for name, v in (("top", top), ("left", left), ("h", h), ("w", w)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"crop: {name} must be an int >= 0, got {v!r}")
    if top + h > H or left + w > W:
        raise ValueError(f"crop window top={top}, left={left}, h={h}, w={w} does not fit in {H}x{W}")


def check_crop_grad(gy, x_shape, top, left):
    check_real("gy", gy, ndim=4)
    if len(x_shape) != 4 or x_shape[:2] != gy.shape[:2]:
        raise ValueError(f"crop_grad: x_shape {x_shape} must be (N, C, H, W) with N, C of gy {gy.shape}")
    check_window(x_shape, top, left, gy.shape[2], gy.shape[3])


def check_concat(a, b):
    check_real("a", a, ndim=4)
    check_same("a", a, "b", b, shape=False)
    if b.ndim != 4 or a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(f"concat: a {a.shape} and b {b.shape} must agree in N, H and W")


def check_concat_grad(gy, ca):
    check_real("gy", gy, ndim=4)
    if not isinstance(ca, (int, np.integer)) or isinstance(ca, bool) or not 0 < ca < gy.shape[1]:
        raise ValueError(f"concat_grad: ca must be an int in 1..{gy.shape[1] - 1}, got {ca!r}")


def check_dropout(x, p, seed, offset=0):
    check_real("x", x)
    if not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be a number in [0, 1), got {p!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < UINT32_LIMIT:
        raise ValueError(f"dropout: seed must be an int in [0, 2**32), got {seed!r}")
    if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"dropout: offset must be an int >= 0, got {offset!r}")
    if offset + x.size >= UINT32_LIMIT:
        raise ValueError(f"dropout: the element index is 32 bits; offset {offset} + {x.size} elements exceed it")


# -- the user functions and their autograd Functions -----------------------------------------------------
class _ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return ctx.backend.relu_grad(gy, y)


def relu(x):
    check_tensor("relu", "x", x)
    return _ReLU.apply(x)


class _Crop(Function):
    @staticmethod
    def forward(ctx, x, top, left, h, w):
        ctx.x_shape, ctx.top, ctx.left = x.shape, top, left
        return ctx.backend.crop(x, top, left, h, w)

    @staticmethod
    def backward(ctx, gy):
        return ctx.backend.crop_grad(gy, ctx.x_shape, ctx.top, ctx.left)


def center_crop(x, h, w):
    """The central h x w window of every channel (the paper's crop before concatenation)."""
    check_tensor("center_crop", "x", x, 4, "(N, C, H, W)")
    H, W = x.shape[2:]
    for name, v, full in (("h", h, H), ("w", w, W)):
        if not isinstance(v, (int, np.integer)) or not 0 < v <= full:
            raise ValueError(f"center_crop: {name} must be an int in [1, {full}] for x of shape {x.shape}, got {v!r}")
    return _Crop.apply(x, (H - h) // 2, (W - w) // 2, int(h), int(w))


class _Concat(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.ca = a.shape[1]
        return ctx.backend.concat(a, b)

    @staticmethod
    def backward(ctx, gy):
        ga, gb = ctx.backend.concat_grad(gy, ctx.ca)
        return ga, gb


def concat(a, b):
    """[a, b] along channels. a and b need equal N, H, W (crop the skip connection first)."""
    check_tensor("concat", "a", a, 4, "(N, Ca, H, W)")
    check_tensor("concat", "b", b, 4, "(N, Cb, H, W)")
    check_like("concat", a, b=b)
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(f"concat: a and b must agree in N, H, W, got {a.shape} and {b.shape}; "
                         f"center_crop the larger one first")
    return _Concat.apply(a, b)


class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, seed, offset):
        y, mask = ctx.backend.dropout(x, p, seed, offset)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_tensors
        return ctx.backend.dropout_grad(gy, mask)


def dropout(x, p=0.5, training=True, seed=None, generator=None, offset=0):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p); identity when
    not training. The mask comes from a counter hash of (seed, offset + element index), identical on every
    device; give `seed` (an int) or `generator` (a numpy Generator that draws one), for reproducible training.
    `offset`: x's first element's index in a larger batch (data parallelism: each process holds a slice).
    """
    check_tensor("dropout", "x", x)
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    if seed is None:
        seed = (generator or np.random.default_rng()).integers(0, 2**32, dtype=np.uint64)
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"dropout: seed must be in [0, 2**32), got {seed!r}")
    return _Dropout.apply(x, float(p), int(seed), int(offset))


# -- the numpy device: the counter hash of kernels/common.cuh, bit for bit -------------------------------
def hash32(x):
    """lowbias32 (Chris Wellons) on a uint32 array; uint32 arithmetic wraps exactly as `unsigned int` does."""
    x = np.array(x, dtype=np.uint32, ndmin=1)  # an array, never a scalar: numpy warns on scalar overflow
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hash_uniform(seed, index):
    """minunet_hash_uniform(seed, index): float32 in [0, 1) from the top 24 bits of the hash (exact)."""
    h = hash32(np.asarray(index, dtype=np.uint32) ^ hash32(seed)[0])
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def dropout_scale(p, dtype):
    """The kept elements' multiplier 1/(1-p), rounded once to dtype (the kernel gets this very value)."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


def keep_where(mask, a, out=None):
    """np.where(mask, a, 0) bit for bit (NaN and -0.0 included), without a branch per element; into out if given.

    np.where branches on every element, and a ReLU or pooling mask is as good as random, so about half the
    branches are mispredicted: on a (2, 16, 122, 122) float32 array np.where took 3.0 ms, this 0.47 ms. Here
    the mask becomes an integer of all ones or all zeros (0 - True = -1) that is ANDed with a's bits.
    """
    bits = np.dtype(f"i{a.itemsize}")
    m = np.negative(mask, dtype=bits, out=None if out is None else out.view(bits))
    return np.bitwise_and(a.view(bits), m, out=m).view(a.dtype)


# -- the numpy device: the ops, each pass in slices on the device's threads (minunet/threads.py) -------------
@numpy_op
def numpy_bias_grad(gy):
    check_real("gy", gy, ndim=4)
    gb = np.empty(gy.shape[1], gy.dtype)
    N, C, H, W = gy.shape
    threads.slices(lambda s: gy[:, s].sum(axis=(0, 2, 3), out=gb[s]), C, N * H * W)
    return gb


def _each_element(fn, *arrays):
    """out = fn(*arrays, out) element by element, over flat slices on the device's threads."""
    out = np.empty_like(arrays[0])
    flat = [a.reshape(-1) for a in arrays + (out,)]
    threads.slices(lambda s: fn(*(a[s] for a in flat)), out.size)
    return out


# relu: NaN propagates (x < 0 is false for NaN), as in the kernel
@numpy_op
def numpy_relu(x):
    check_real("x", x)
    return _each_element(lambda x, out: keep_where(~(x < 0), x, out), x)


@numpy_op
def numpy_relu_grad(gy, y):
    check_real("gy", gy)
    check_same("gy", gy, "y", y)
    return _each_element(lambda gy, y, out: keep_where(y > 0, gy, out), gy, y)


# crop and concat: window copies
@numpy_op
def numpy_crop(x, top, left, h, w):
    check_real("x", x, ndim=4)
    check_window(x.shape, top, left, h, w)
    y = np.empty(x.shape[:2] + (h, w), x.dtype)
    threads.copy(y, x[:, :, top:top + h, left:left + w])
    return y


@numpy_op
def numpy_crop_grad(gy, x_shape, top, left):
    x_shape = tuple(x_shape)
    check_crop_grad(gy, x_shape, top, left)
    gx = np.zeros(x_shape, gy.dtype)
    threads.copy(gx[:, :, top:top + gy.shape[2], left:left + gy.shape[3]], gy)
    return gx


@numpy_op
def numpy_concat(a, b):
    check_concat(a, b)
    ca = a.shape[1]
    y = np.empty((a.shape[0], ca + b.shape[1]) + a.shape[2:], a.dtype)
    threads.copy(y[:, :ca], a)
    threads.copy(y[:, ca:], b)
    return y


@numpy_op
def numpy_concat_grad(gy, ca):
    check_concat_grad(gy, ca)
    if gy.shape[0] == 1:  # one image: each part of the channels is contiguous, a view will do
        return gy[:, :ca], gy[:, ca:]
    ga, gb = np.empty_like(gy[:, :ca]), np.empty_like(gy[:, ca:])
    threads.copy(ga, gy[:, :ca])
    threads.copy(gb, gy[:, ca:])
    return ga, gb


# dropout: element i (flat index) is kept iff hash_uniform(seed, i) >= p (compared in float32)
@numpy_op
def numpy_dropout(x, p, seed, offset=0):
    check_dropout(x, p, seed, offset)
    mask = np.empty_like(x)
    scale, zero = dropout_scale(p, x.dtype), x.dtype.type(0)

    def masks(s):
        u = hash_uniform(seed, np.arange(offset + s.start, offset + s.stop, dtype=np.uint32))
        mask.reshape(-1)[s] = np.where(u >= np.float32(p), scale, zero)
    threads.slices(masks, x.size)
    return numpy_dropout_grad(x, mask), mask


@numpy_op
def numpy_dropout_grad(gy, mask):
    check_real("gy", gy)
    check_same("gy", gy, "mask", mask)
    return _each_element(np.multiply, gy, mask)


# -- the kernel devices (cuda, sim): kernels/elementwise.cu, one launcher per kernel, named as its kernel -------
ELEMENTWISE = KernelDefines("elementwise.cu")
THREADS = ELEMENTWISE.MINUNET_THREADS  # one thread per element, and the block of bias_grad's reduction


@kernel_op
def kernel_bias_grad(be, gy, version=None):
    check_real("gy", gy, ndim=4)
    launch = pick("bias_grad", version, gy.dtype, be)
    check_int32_size("bias_grad", gy.shape)
    gb = be.empty((gy.shape[1],), gy.dtype)
    launch(be, gy, gb)
    return gb


@launcher
def bias_grad_v1(be, gy, gb):
    """One block per channel, a shared-memory reduction over N, H, W (one partial sum per thread)."""
    N, C, H, W = gy.shape
    be.launch("elementwise", "bias_grad_v1", gy.dtype, (C,), (THREADS,), (gy, gb) + i32(N, C, H * W),
              shared_mem=THREADS * gy.dtype.itemsize)


@kernel_op
def kernel_relu(be, x, version=None):
    check_real("x", x)
    launch = pick("relu_forward", version, x.dtype, be)
    check_int32_size("relu", x.shape)
    y = be.empty(x.shape, x.dtype)
    launch(be, x, y)
    return y


@launcher
def relu_forward_v1(be, x, y):
    be.launch("elementwise", "relu_forward_v1", x.dtype, (cdiv(x.size, THREADS),), (THREADS,), (x, y) + i32(x.size))


@kernel_op
def kernel_relu_grad(be, gy, y, version=None):
    check_real("gy", gy)
    check_same("gy", gy, "y", y)
    launch = pick("relu_backward", version, gy.dtype, be)
    check_int32_size("relu_grad", gy.shape)
    gx = be.empty(gy.shape, gy.dtype)
    launch(be, gy, y, gx)
    return gx


@launcher
def relu_backward_v1(be, gy, y, gx):
    be.launch("elementwise", "relu_backward_v1", gy.dtype, (cdiv(gy.size, THREADS),), (THREADS,),
              (gy, y, gx) + i32(gy.size))


# crop, concat and their gradients: copies of an (N, C, h, w) window between NCHW arrays; their version= is
# copy_window's. crop_grad's zeros come from fill (one version).
def _copy_window(be, src, src_at, dst, dst_at, window, version=None):
    """dst[n, dc+c, dy+i, dx+j] = src[n, sc+c, sy+i, sx+j] for (n, c, i, j) in window = (N, C, h, w)."""
    pick("copy_window", version, src.dtype, be)(be, src, src_at, dst, dst_at, window)


@launcher
def copy_window_v1(be, src, src_at, dst, dst_at, window):
    """One thread per element of the window."""
    count = int(np.prod(window))
    args = (src,) + i32(*src.shape[1:], *src_at) + (dst,) + i32(*dst.shape[1:], *dst_at, *window)
    be.launch("elementwise", "copy_window_v1", src.dtype, (cdiv(count, THREADS),), (THREADS,), args)


def _fill(be, shape, dtype, value):
    y = be.empty(shape, dtype)
    pick("fill", None, dtype, be)(be, y, value)
    return y


@launcher
def fill_v1(be, y, value):
    be.launch("elementwise", "fill_v1", y.dtype, (cdiv(y.size, THREADS),), (THREADS,),
              (y, be.real(y.dtype, value)) + i32(y.size))


@kernel_op
def kernel_crop(be, x, top, left, h, w, version=None):
    check_real("x", x, ndim=4)
    check_window(x.shape, top, left, h, w)
    check_int32_size("crop", x.shape)
    N, C = x.shape[:2]
    y = be.empty((N, C, h, w), x.dtype)
    _copy_window(be, x, (0, top, left), y, (0, 0, 0), (N, C, h, w), version)
    return y


@kernel_op
def kernel_crop_grad(be, gy, x_shape, top, left, version=None):
    x_shape = tuple(int(s) for s in x_shape)
    check_crop_grad(gy, x_shape, top, left)
    check_int32_size("crop_grad", x_shape)
    gx = _fill(be, x_shape, gy.dtype, 0.0)
    _copy_window(be, gy, (0, 0, 0), gx, (0, top, left), gy.shape, version)
    return gx


@kernel_op
def kernel_concat(be, a, b, version=None):
    check_concat(a, b)
    N, ca, H, W = a.shape
    cb = b.shape[1]
    check_int32_size("concat", (N, ca + cb, H, W))
    y = be.empty((N, ca + cb, H, W), a.dtype)
    _copy_window(be, a, (0, 0, 0), y, (0, 0, 0), a.shape, version)
    _copy_window(be, b, (0, 0, 0), y, (ca, 0, 0), b.shape, version)
    return y


@kernel_op
def kernel_concat_grad(be, gy, ca, version=None):
    check_concat_grad(gy, ca)
    check_int32_size("concat_grad", gy.shape)
    N, C, H, W = gy.shape
    ga = be.empty((N, ca, H, W), gy.dtype)
    gb = be.empty((N, C - ca, H, W), gy.dtype)
    _copy_window(be, gy, (0, 0, 0), ga, (0, 0, 0), ga.shape, version)
    _copy_window(be, gy, (ca, 0, 0), gb, (0, 0, 0), gb.shape, version)
    return ga, gb


# dropout: the mask comes from the counter hash of (seed, flat index), as in NumPy
@kernel_op
def kernel_dropout(be, x, p, seed, offset=0, version=None):
    check_dropout(x, p, seed, offset)
    launch = pick("dropout_forward", version, x.dtype, be)
    check_int32_size("dropout", x.shape)
    y = be.empty(x.shape, x.dtype)
    mask = be.empty(x.shape, x.dtype)
    launch(be, x, y, mask, p, seed, offset)
    return y, mask


@launcher
def dropout_forward_v1(be, x, y, mask, p, seed, offset):
    args = (x, y, mask, np.int32(x.size), np.uint32(seed), np.uint32(offset), np.float32(p), dropout_scale(p, x.dtype))
    be.launch("elementwise", "dropout_forward_v1", x.dtype, (cdiv(x.size, THREADS),), (THREADS,), args)


@kernel_op
def kernel_dropout_grad(be, gy, mask, version=None):
    check_real("gy", gy)
    check_same("gy", gy, "mask", mask)
    launch = pick("multiply", version, gy.dtype, be)
    check_int32_size("dropout_grad", gy.shape)
    gx = be.empty(gy.shape, gy.dtype)
    launch(be, gy, mask, gx)
    return gx


@launcher
def multiply_v1(be, a, b, out):
    be.launch("elementwise", "multiply_v1", a.dtype, (cdiv(a.size, THREADS),), (THREADS,), (a, b, out) + i32(a.size))
