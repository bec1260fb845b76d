"""relu, center_crop/crop, concat, dropout and bias_grad: the U-Net's plumbing; every Python part of them.

In order: the argument checks; the user functions (relu, center_crop, concat, dropout) and their autograd
Functions; the numpy device (vectorised, written to be read next to kernels/elementwise.cu: the kernels are
checked against it; each op keeps its input's dtype); the launches of kernels/elementwise.cu for cuda and sim,
whose rows are in launch_table.py. crop, concat and their gradients are all one kernel, copy_window.
bias_grad is every convolution's third gradient (one reduction per channel).
"""
import numpy as np

from ..tensor import Function
from .checks import check_like, check_real, check_same, check_tensor
from .launching import check_int32_size, launch_blocks, launch_per_element, pick

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


def keep_where(mask, a):
    """np.where(mask, a, 0) bit for bit (NaN and -0.0 included), without a branch per element.

    np.where branches on every element, and a ReLU or pooling mask is as good as random, so about half the
    branches are mispredicted: on a (2, 16, 122, 122) float32 array np.where took 3.0 ms, this 0.47 ms. Here
    the mask becomes an integer of all ones or all zeros (0 - True = -1) that is ANDed with a's bits.
    """
    bits = np.dtype(f"i{a.itemsize}")
    m = np.negative(mask, dtype=bits)
    return np.bitwise_and(a.view(bits), m, out=m).view(a.dtype)


# -- the numpy device: the ops ---------------------------------------------------------------------------
def numpy_bias_grad(gy):
    check_real("gy", gy, ndim=4)
    return gy.sum(axis=(0, 2, 3))


# relu: NaN propagates (x < 0 is false for NaN), as in the kernel
def numpy_relu(x):
    check_real("x", x)
    return keep_where(~(x < 0), x)


def numpy_relu_grad(gy, y):
    check_real("gy", gy)
    check_same("gy", gy, "y", y)
    return keep_where(y > 0, gy)


# crop and concat: window copies
def numpy_crop(x, top, left, h, w):
    check_real("x", x, ndim=4)
    check_window(x.shape, top, left, h, w)
    return x[:, :, top:top + h, left:left + w].copy()


def numpy_crop_grad(gy, x_shape, top, left):
    x_shape = tuple(x_shape)
    check_crop_grad(gy, x_shape, top, left)
    gx = np.zeros(x_shape, gy.dtype)
    gx[:, :, top:top + gy.shape[2], left:left + gy.shape[3]] = gy
    return gx


def numpy_concat(a, b):
    check_concat(a, b)
    return np.concatenate([a, b], axis=1)


def numpy_concat_grad(gy, ca):
    check_concat_grad(gy, ca)
    return gy[:, :ca].copy(), gy[:, ca:].copy()


# dropout: element i (flat index) is kept iff hash_uniform(seed, i) >= p (compared in float32)
def numpy_dropout(x, p, seed, offset=0):
    check_dropout(x, p, seed, offset)
    u = hash_uniform(seed, np.arange(offset, offset + x.size, dtype=np.uint32)).reshape(x.shape)
    mask = np.where(u >= np.float32(p), dropout_scale(p, x.dtype), x.dtype.type(0))
    return x * mask, mask


def numpy_dropout_grad(gy, mask):
    check_real("gy", gy)
    check_same("gy", gy, "mask", mask)
    return gy * mask


# -- the kernel devices (cuda, sim): kernels/elementwise.cu, each launch as its row in launch_table.py says ---
def kernel_bias_grad(be, gy, version=None):
    """One block per channel, a shared-memory reduction over N, H, W."""
    check_real("gy", gy, ndim=4)
    row = pick("bias_grad", "", version, gy.dtype, be)
    N, C, H, W = gy.shape
    check_int32_size("bias_grad", gy.shape)
    gb = be.empty((C,), gy.dtype)
    if C > 0:
        launch_blocks(be, row, gy.dtype, C, (gy, gb, np.int32(N), np.int32(C), np.int32(H * W)))
    return gb


def kernel_relu(be, x, version=None):
    check_real("x", x)
    row = pick("relu", "forward", version, x.dtype, be)
    y = be.empty(x.shape, x.dtype)
    launch_per_element(be, row, x.dtype, x.size, (x, y, np.int32(x.size)))
    return y


def kernel_relu_grad(be, gy, y, version=None):
    check_real("gy", gy)
    check_same("gy", gy, "y", y)
    row = pick("relu", "backward", version, gy.dtype, be)
    gx = be.empty(gy.shape, gy.dtype)
    launch_per_element(be, row, gy.dtype, gy.size, (gy, y, gx, np.int32(gy.size)))
    return gx


# crop and concat: all four are copies of an (N, C, h, w) window between NCHW arrays
def _copy_window(be, src, src_at, dst, dst_at, window, version=None):
    """dst[n, dc+c, dy+i, dx+j] = src[n, sc+c, sy+i, sx+j] for (n, c, i, j) in window = (N, C, h, w)."""
    row = pick("copy_window", "", version, src.dtype, be)
    n = int(np.prod(window))
    args = (src, *map(np.int32, src.shape[1:]), *map(np.int32, src_at),
            dst, *map(np.int32, dst.shape[1:]), *map(np.int32, dst_at), *map(np.int32, window))
    launch_per_element(be, row, src.dtype, n, args)


def _fill(be, shape, dtype, value):
    y = be.empty(shape, dtype)
    launch_per_element(be, pick("fill", "", None, dtype), dtype, y.size, (y, be.real(dtype, value), np.int32(y.size)))
    return y


def kernel_crop(be, x, top, left, h, w, version=None):
    check_real("x", x, ndim=4)
    check_window(x.shape, top, left, h, w)
    check_int32_size("crop", x.shape)
    N, C = x.shape[:2]
    y = be.empty((N, C, h, w), x.dtype)
    _copy_window(be, x, (0, top, left), y, (0, 0, 0), (N, C, h, w), version)
    return y


def kernel_crop_grad(be, gy, x_shape, top, left, version=None):
    x_shape = tuple(int(s) for s in x_shape)
    check_crop_grad(gy, x_shape, top, left)
    check_int32_size("crop_grad", x_shape)
    gx = _fill(be, x_shape, gy.dtype, 0.0)
    _copy_window(be, gy, (0, 0, 0), gx, (0, top, left), gy.shape, version)
    return gx


def kernel_concat(be, a, b, version=None):
    check_concat(a, b)
    N, ca, H, W = a.shape
    cb = b.shape[1]
    check_int32_size("concat", (N, ca + cb, H, W))
    y = be.empty((N, ca + cb, H, W), a.dtype)
    _copy_window(be, a, (0, 0, 0), y, (0, 0, 0), a.shape, version)
    _copy_window(be, b, (0, 0, 0), y, (ca, 0, 0), b.shape, version)
    return y


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
def kernel_dropout(be, x, p, seed, offset=0, version=None):
    check_dropout(x, p, seed, offset)
    row = pick("dropout", "forward", version, x.dtype, be)
    y = be.empty(x.shape, x.dtype)
    mask = be.empty(x.shape, x.dtype)
    launch_per_element(be, row, x.dtype, x.size, (x, y, mask, np.int32(x.size), np.uint32(seed), np.uint32(offset),
                                                  np.float32(p), dropout_scale(p, x.dtype)))
    return y, mask


def kernel_dropout_grad(be, gy, mask, version=None):
    check_real("gy", gy)
    check_same("gy", gy, "mask", mask)
    row = pick("multiply", "", version, gy.dtype, be)
    gx = be.empty(gy.shape, gy.dtype)
    launch_per_element(be, row, gy.dtype, gy.size, (gy, mask, gx, np.int32(gy.size)))
    return gx
