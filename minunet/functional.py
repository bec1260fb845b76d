"""The U-Net's operators, differentiable: argument checks here, math in the device backends.

Layouts are PyTorch's (NCHW; conv weights (Cout, Cin, kh, kw); transposed-conv weights (Cin, Cout, 2, 2)), so
every result can be compared with PyTorch directly. Each operator is a Function whose forward and backward
call one backend op per direction (see ARCHITECTURE.md); on "cuda" and "sim" each op is a kernel of kernels/.

Bad input is a TypeError (wrong kind or dtype) or ValueError (wrong shape, values or device) that names the
argument and what was expected. Nothing is cast silently.
"""
import numpy as np

from .tensor import Function, Tensor

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_PADDING = {"valid": 0, "same": 1}


# -- argument checks ---------------------------------------------------------------------------------------
def _check_tensor(op, name, t, ndim=None, shape_hint=""):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a minunet Tensor, got {type(t).__name__}; wrap it: mu.Tensor(array)")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {t.dtype}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions {shape_hint}, got shape {t.shape}")
    if not t.data.flags.c_contiguous:
        raise ValueError(f"{op}: {name} is not C-contiguous; make a contiguous copy first "
                         f"(numpy.ascontiguousarray)")


def _check_same(op, x, **others):
    """The other tensors share x's dtype and device (no silent casts or transfers)."""
    for name, t in others.items():
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} is {t.dtype} but x is {x.dtype}; convert one explicitly")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device!r} but x is on {x.device!r}; use .to({x.device!r})")


def _check_weight_bias(op, x, w, b, w_shape):
    """w must have exactly w_shape (None entries are free); b, if given, shape (w_shape[0] or Cout,)."""
    _check_tensor(op, "w", w, len(w_shape), str(tuple("*" if s is None else s for s in w_shape)))
    if any(s is not None and s != ws for s, ws in zip(w_shape, w.shape)):
        want = tuple("Cout" if s is None else s for s in w_shape)
        raise ValueError(f"{op}: w must have shape {want} for x with {x.shape[1]} channels, got {w.shape}")
    _check_same(op, x, w=w)
    if b is not None:
        cout = w.shape[w_shape.index(None)]  # the free entry of w_shape is Cout
        _check_tensor(op, "b", b, 1, f"(Cout,) = ({cout},)")
        if b.shape != (cout,):
            raise ValueError(f"{op}: b must have shape ({cout},), got {b.shape}")
        _check_same(op, x, b=b)


def _tensors(*items):
    return tuple(t for t in items if t is not None)


def _grads_for(ctx, *grads):
    """Backward returns one gradient per Tensor input; skip the work for inputs that need none."""
    return tuple(g() if need else None for g, need in zip(grads, ctx.needs_input_grad))


# -- convolutions ------------------------------------------------------------------------------------------
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
        return _grads_for(ctx, lambda: be.conv3x3_grad_input(gy, w, ctx.pad, ctx.x_shape),
                          lambda: be.conv3x3_grad_weight(x, gy, ctx.pad), lambda: be.bias_grad(gy))


def conv3x3(x, w, b=None, padding="valid", relu=False):
    """3x3 convolution, stride 1. padding "valid" (the paper's: output 2 px smaller) or "same".

    relu=True computes relu(conv3x3(x, w, b)) in one step: on cuda/sim the bias and ReLU are applied in the
    kernel's epilogue, before the single write of the output (one pass over the activation instead of two).
    """
    _check_tensor("conv3x3", "x", x, 4, "(N, Cin, H, W)")
    if padding not in _PADDING:
        raise ValueError(f"conv3x3: padding must be 'valid' or 'same', got {padding!r}")
    _check_weight_bias("conv3x3", x, w, b, (None, x.shape[1], 3, 3))
    if padding == "valid" and min(x.shape[2:]) < 3:
        raise ValueError(f"conv3x3: a valid 3x3 convolution needs H, W >= 3, got x of shape {x.shape}")
    return _Conv3x3.apply(x, w, *_tensors(b), pad=_PADDING[padding], relu=bool(relu))


class _Conv1x1(Function):
    @staticmethod
    def forward(ctx, x, w, *b):
        ctx.save_for_backward(x, w)
        return ctx.backend.conv1x1(x, w, b[0] if b else None)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        be = ctx.backend
        return _grads_for(ctx, lambda: be.conv1x1_grad_input(gy, w),
                          lambda: be.conv1x1_grad_weight(x, gy), lambda: be.bias_grad(gy))


def conv1x1(x, w, b=None):
    """1x1 convolution: a per-pixel linear map of the channels (the U-Net's output layer)."""
    _check_tensor("conv1x1", "x", x, 4, "(N, Cin, H, W)")
    _check_weight_bias("conv1x1", x, w, b, (None, x.shape[1], 1, 1))
    return _Conv1x1.apply(x, w, *_tensors(b))


class _UpConv2x2(Function):
    @staticmethod
    def forward(ctx, x, w, *b):
        ctx.save_for_backward(x, w)
        return ctx.backend.up_conv2x2(x, w, b[0] if b else None)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        be = ctx.backend
        return _grads_for(ctx, lambda: be.up_conv2x2_grad_input(gy, w),
                          lambda: be.up_conv2x2_grad_weight(x, gy), lambda: be.bias_grad(gy))


def up_conv2x2(x, w, b=None):
    """2x2 up-convolution (transposed convolution, stride 2): doubles H and W. w: (Cin, Cout, 2, 2)."""
    _check_tensor("up_conv2x2", "x", x, 4, "(N, Cin, H, W)")
    _check_weight_bias("up_conv2x2", x, w, b, (x.shape[1], None, 2, 2))
    return _UpConv2x2.apply(x, w, *_tensors(b))


# -- pooling, activation, plumbing -------------------------------------------------------------------------
class _MaxPool2x2(Function):
    @staticmethod
    def forward(ctx, x):
        y, argmax = ctx.backend.max_pool2x2(x)
        ctx.save_for_backward(argmax)
        return y

    @staticmethod
    def backward(ctx, gy):
        (argmax,) = ctx.saved_tensors
        return ctx.backend.max_pool2x2_grad(gy, argmax)


def max_pool2x2(x):
    """2x2 max pooling, stride 2. H and W must be even: the paper chooses tiles so that no pixel is dropped."""
    _check_tensor("max_pool2x2", "x", x, 4, "(N, C, H, W)")
    h, w = x.shape[2:]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"max_pool2x2: H and W must be even and > 0, got {h}x{w} (x shape {x.shape}); "
                         f"choose the tile size with minunet.unet.valid_input_sizes")
    return _MaxPool2x2.apply(x)


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
    _check_tensor("relu", "x", x)
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
    _check_tensor("center_crop", "x", x, 4, "(N, C, H, W)")
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
    _check_tensor("concat", "a", a, 4, "(N, Ca, H, W)")
    _check_tensor("concat", "b", b, 4, "(N, Cb, H, W)")
    _check_same("concat", a, b=b)
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
    _check_tensor("dropout", "x", x)
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    if seed is None:
        seed = (generator or np.random.default_rng()).integers(0, 2**32, dtype=np.uint64)
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"dropout: seed must be in [0, 2**32), got {seed!r}")
    return _Dropout.apply(x, float(p), int(seed), int(offset))


# -- the loss ----------------------------------------------------------------------------------------------
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
    _check_tensor(op, "logits", logits, 4, "(N, K, H, W)")
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
