"""weighted_softmax_cross_entropy: the paper's loss, one fused pass; every Python part of it.

    loss = mean over counted pixels of w(x) * -log softmax(logits)(x)[label(x)]

In order: the argument checks; the user function and its autograd Function; the numpy device; the launch of
kernels/softmax_cross_entropy.cu for cuda and sim (its launcher, named as its kernel). The backend op returns
(loss_sum, grad) in one pass: grad = scale * w * (softmax - onehot(label)), 0 at ignored pixels.
"""
import numpy as np

from ..backends.registry import kernel_op, numpy_op
from ..tensor import Function, Tensor
from .checks import check_real, check_same, check_tensor
from .launching import KernelDefines, cdiv, check_int32_size, i32, launcher, pick


# -- argument checks of the backend op ---------------------------------------------------------------------
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


# -- the user function and its autograd Function ---------------------------------------------------------
class _SoftmaxCrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, labels, weights, ignore_index, count):
        loss_sum, grad = ctx.backend.softmax_cross_entropy(logits, labels, weights, ignore_index, 1.0 / count)
        ctx.save_for_backward(grad)
        return ctx.backend.xp.asarray(loss_sum / count, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return grad if float(g) == 1.0 else grad * g


def _raw_on_device(op, name, value, like):
    """Labels and weights may be Tensors or raw arrays, but must already live on logits' device."""
    if isinstance(value, Tensor):
        if value.device != like.device:
            raise ValueError(f"{op}: {name} is on {value.device!r} but logits on {like.device!r}; "
                             f"use .to({like.device!r})")
        return value.data
    expected = np.ndarray if like.device in ("numpy", "sim") else type(like.data)
    if not isinstance(value, expected):
        raise TypeError(f"{op}: {name} must be a Tensor or a {expected.__module__}.{expected.__name__} "
                        f"on {like.device!r}, got {type(value).__name__}")
    return value


def weighted_softmax_cross_entropy(logits, labels, weights=None, ignore_index=None):
    """mean over counted pixels of w(x) * -log softmax(logits)(x)[label(x)] (numerically stable).

    logits (N, K, H, W) float; labels (N, H, W) integer class indices in [0, K) (or ignore_index);
    weights (N, H, W), same dtype as logits, finite and >= 0 (the paper's weight map), or None for 1.
    Pixels whose label is ignore_index are not counted and get no gradient.
    """
    op = "weighted_softmax_cross_entropy"
    check_tensor(op, "logits", logits, 4, "(N, K, H, W)")
    xp = logits.backend.xp
    n, k, h, w = logits.shape
    labels = _raw_on_device(op, "labels", labels, logits)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be an integer array of class indices, got {labels.dtype}")
    if tuple(labels.shape) != (n, h, w):
        raise ValueError(f"{op}: labels must have shape (N, H, W) = {(n, h, w)}, got {tuple(labels.shape)}")
    ignore = -1
    if ignore_index is not None:
        if (not isinstance(ignore_index, (int, np.integer)) or 0 <= ignore_index < k
                or not -2**31 <= ignore_index < 2**31):
            raise ValueError(f"{op}: ignore_index must be an int32 outside the classes [0, {k}), got {ignore_index!r}")
        ignore = int(ignore_index)
    # An ignore_index the labels' dtype cannot hold (uint8 labels, -1) matches no pixel. Not compared: CuPy's
    # scalar conversion refuses an out-of-range integer (NEP 50), where NumPy answers "all different".
    info = np.iinfo(labels.dtype)
    counted = labels != ignore if ignore_index is not None and info.min <= ignore <= info.max else None
    values = labels[counted] if counted is not None else labels
    if values.size and (int(values.min()) < 0 or int(values.max()) >= k):
        found = xp.unique(values)
        bad = [int(v) for v in found[(found < 0) | (found >= k)][:10]]
        hint = " (a mask stored as 0/255? divide it by 255 or map its values to class indices)" if 255 in bad else ""
        raise ValueError(f"{op}: labels must be class indices in [0, {k}), found values {bad}{hint}")
    count = int(values.size)
    if count == 0:
        raise ValueError(f"{op}: every pixel has label ignore_index={ignore_index}; nothing to average")
    if weights is not None:
        weights = _raw_on_device(op, "weights", weights, logits)
        if tuple(weights.shape) != (n, h, w):
            raise ValueError(f"{op}: weights must have shape (N, H, W) = {(n, h, w)}, got {tuple(weights.shape)}")
        if weights.dtype != logits.dtype:
            raise TypeError(f"{op}: weights are {weights.dtype} but logits {logits.dtype}; convert one explicitly")
        if not bool(xp.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"{op}: weights must be finite and >= 0")
        weights = xp.ascontiguousarray(weights)
    labels = xp.ascontiguousarray(labels, dtype=np.int32)  # values checked above: exact
    return _SoftmaxCrossEntropy.apply(logits, labels, weights, ignore, count)


# -- the numpy device: softmax cross-entropy over the class axis, with per-pixel weights and an ignored label --
@numpy_op
def numpy_softmax_cross_entropy(logits, labels, weights, ignore_index, scale):
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


# -- the kernel devices (cuda, sim): one fused kernel; it writes per-block loss sums, added here ------------
THREADS = KernelDefines("softmax_cross_entropy.cu").MINUNET_THREADS


@kernel_op
def kernel_softmax_cross_entropy(be, logits, labels, weights, ignore_index, scale, version=None):
    check_loss(logits, labels, weights, ignore_index)
    launch = pick("softmax_cross_entropy", version, logits.dtype, be)
    check_int32_size("softmax_cross_entropy", logits.shape)
    grad = be.empty(logits.shape, logits.dtype)
    return launch(be, logits, labels, weights, ignore_index, scale, grad), grad


@launcher
def softmax_cross_entropy_v1(be, logits, labels, weights, ignore_index, scale, grad):
    """One thread per pixel; each block's loss sum goes to partials[block] (double even for float logits: see
    the kernel's header), their sum is the loss."""
    N, K, H, W = logits.shape
    blocks = cdiv(N * H * W, THREADS)
    if blocks == 0:
        return 0.0
    partials = be.empty((blocks,), np.float64)
    has_weights = weights is not None
    args = (logits, labels, weights if has_weights else logits,  # any real* when unused
            np.int32(has_weights), np.int32(ignore_index), be.real(logits.dtype, scale)) + i32(N, K, H * W) + (
            grad, partials)
    be.launch("softmax_cross_entropy", "softmax_cross_entropy_v1", logits.dtype, (blocks,), (THREADS,), args,
              shared_mem=THREADS * 8)
    return float(be.xp.sum(partials))
