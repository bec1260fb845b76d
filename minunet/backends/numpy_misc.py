"""The numpy device, part 2: every op that is not a convolution (pooling, relu, crop/concat, dropout, loss, SGD).

Vectorised NumPy, written to be read next to kernels/max_pool2x2.cu, elementwise.cu, softmax_cross_entropy.cu
and sgd.cu: the kernels are checked against these functions. Each op keeps its input's dtype (float32 or
float64). The argument checks are shared with the kernel backend (minunet/backends/kernel_misc.py).
"""
import numpy as np

UINT32_LIMIT = 2**32


# ----------------------------------------------------------------------------------------------------------------
# argument checks (shared by the numpy and kernel backends)

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


def check_pool_input(x):
    check_real("x", x, ndim=4)
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"max_pool2x2 needs an even height and width, got x of shape {x.shape}")


def check_pool_grad(gy, argmax):
    check_real("gy", gy, ndim=4)
    if argmax.dtype != np.uint8 or argmax.shape != gy.shape:
        raise ValueError(f"argmax must be uint8 of shape {gy.shape}, got {argmax.dtype} {argmax.shape}")


def check_window(x_shape, top, left, h, w):
    """The crop window [top, top+h) x [left, left+w) must lie inside x's height and width."""
    H, W = x_shape[2], x_shape[3]
    for name, v in (("top", top), ("left", left), ("h", h), ("w", w)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"crop: {name} must be an int >= 0, got {v!r}")
    if top + h > H or left + w > W:
        raise ValueError(f"crop window top={top}, left={left}, h={h}, w={w} does not fit in {H}x{W}")


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


def check_loss(logits, labels, weights, ignore_index):
    check_real("logits", logits, ndim=4)
    N, K, H, W = logits.shape
    if K < 1:
        raise ValueError(f"logits need at least one class, got shape {logits.shape}")
    if labels.dtype != np.int32 or labels.shape != (N, H, W):
        raise ValueError(f"labels must be int32 of shape {(N, H, W)}, got {labels.dtype} {labels.shape}")
    if weights is not None:
        check_same("logits", logits, "weights", weights, shape=False)
        if weights.shape != (N, H, W):
            raise ValueError(f"weights must have shape {(N, H, W)}, got {weights.shape}")
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool) or ignore_index < -1:
        raise ValueError(f"ignore_index must be an int >= 0, or -1 for none, got {ignore_index!r}")


def check_sgd(param, grad, velocity):
    check_real("param", param)
    check_same("param", param, "grad", grad)
    check_same("param", param, "velocity", velocity)


# ----------------------------------------------------------------------------------------------------------------
# the counter hash of kernels/common.cuh, bit for bit

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


def _window_corners(a):
    """The 4 pixels of every 2x2 window as strided views (N, C, H/2, W/2), in the kernels' order k = 2*dy + dx."""
    return [a[:, :, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]


# ----------------------------------------------------------------------------------------------------------------

class MiscNumpyOps:
    def bias_grad(self, gy):
        check_real("gy", gy, ndim=4)
        return gy.sum(axis=(0, 2, 3))

    # --- 2x2 max pooling: the window's 4 corners are strided views, so nothing is copied or transposed ---
    def max_pool2x2(self, x):
        check_pool_input(x)
        c = _window_corners(x)
        # np.maximum returns NaN if either side is NaN, so y is NaN iff the window holds one, as in the kernel.
        # (Where +0.0 and -0.0 tie, np.maximum may return either zero, the kernel the first one; they compare equal.)
        y = np.maximum(np.maximum(c[0], c[1]), np.maximum(c[2], c[3]))
        # argmax: the first corner equal to y (or the first NaN), found without a branch per element: with
        # not_k = "corner k is neither y nor NaN" (0 or 1), argmax = not_0 * (1 + not_1 * (1 + not_2)).
        not_it = [((ck != y) & (ck == ck)).view(np.uint8) for ck in c[:3]]
        argmax = not_it[0] * (1 + not_it[1] * (1 + not_it[2]))
        return y, argmax

    def max_pool2x2_grad(self, gy, argmax):
        check_pool_grad(gy, argmax)
        N, C, h, w = gy.shape
        gx = np.empty((N, C, 2 * h, 2 * w), gy.dtype)
        for k, corner in enumerate(_window_corners(gx)):  # the 4 views cover gx exactly once
            corner[...] = keep_where(argmax == k, gy)
        return gx

    # --- relu: NaN propagates (x < 0 is false for NaN), as in the kernel ---
    def relu(self, x):
        check_real("x", x)
        return keep_where(~(x < 0), x)

    def relu_grad(self, gy, y):
        check_real("gy", gy)
        check_same("gy", gy, "y", y)
        return keep_where(y > 0, gy)

    # --- crop and concat: window copies ---
    def crop(self, x, top, left, h, w):
        check_real("x", x, ndim=4)
        check_window(x.shape, top, left, h, w)
        return x[:, :, top:top + h, left:left + w].copy()

    def crop_grad(self, gy, x_shape, top, left):
        check_real("gy", gy, ndim=4)
        x_shape = tuple(x_shape)
        if len(x_shape) != 4 or x_shape[:2] != gy.shape[:2]:
            raise ValueError(f"crop_grad: x_shape {x_shape} must be (N, C, H, W) with N, C of gy {gy.shape}")
        check_window(x_shape, top, left, gy.shape[2], gy.shape[3])
        gx = np.zeros(x_shape, gy.dtype)
        gx[:, :, top:top + gy.shape[2], left:left + gy.shape[3]] = gy
        return gx

    def concat(self, a, b):
        check_concat(a, b)
        return np.concatenate([a, b], axis=1)

    def concat_grad(self, gy, ca):
        check_concat_grad(gy, ca)
        return gy[:, :ca].copy(), gy[:, ca:].copy()

    # --- dropout: element i (flat index) is kept iff hash_uniform(seed, i) >= p (compared in float32) ---
    def dropout(self, x, p, seed, offset=0):
        check_dropout(x, p, seed, offset)
        u = hash_uniform(seed, np.arange(offset, offset + x.size, dtype=np.uint32)).reshape(x.shape)
        mask = np.where(u >= np.float32(p), dropout_scale(p, x.dtype), x.dtype.type(0))
        return x * mask, mask

    def dropout_grad(self, gy, mask):
        check_real("gy", gy)
        check_same("gy", gy, "mask", mask)
        return gy * mask

    # --- softmax cross-entropy over the class axis, with per-pixel weights and an ignored label ---
    def softmax_cross_entropy(self, logits, labels, weights, ignore_index, scale):
        check_loss(logits, labels, weights, ignore_index)
        dtype = logits.dtype.type
        N, K, H, W = logits.shape
        counted = labels != ignore_index  # all True when ignore_index == -1 (labels are >= 0)
        # minunet.functional validates labels; checked again here because a negative index would wrap silently
        if ((labels[counted] < 0) | (labels[counted] >= K)).any():
            raise ValueError(f"labels must lie in [0, {K}) or equal ignore_index={ignore_index}")
        w = np.ones((N, H, W), logits.dtype) if weights is None else weights
        w = np.where(counted, w, dtype(0))
        # stable log-softmax: subtract the per-pixel max before exp
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_sum
        safe_labels = np.where(counted, labels, 0).astype(np.intp)
        log_p_label = np.take_along_axis(log_p, safe_labels[:, None], axis=1)[:, 0]
        loss_sum = float(np.sum(w * -log_p_label, dtype=np.float64))
        onehot = np.arange(K)[None, :, None, None] == safe_labels[:, None]
        grad = dtype(scale) * w[:, None] * (np.exp(log_p) - onehot.astype(logits.dtype))
        return loss_sum, grad

    # --- SGD with momentum (PyTorch's, dampening 0), in place ---
    def sgd_step(self, param, grad, velocity, lr, momentum, weight_decay):
        check_sgd(param, grad, velocity)
        real = param.dtype.type
        g = grad + real(weight_decay) * param
        velocity *= real(momentum)
        velocity += g
        param -= real(lr) * velocity
