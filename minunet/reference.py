"""The ground truth: every backend op as the readable loops of its formula.

Each function has the name and argument order of a backend op (ARCHITECTURE.md's table; no version=) and
its formula in the docstring; the body is that formula, looping over output (or input) pixels with a small
NumPy sum over each window. Nothing here is fast, and nothing calls a fast path: the tests compare the numpy
device and every kernel version (sim, cuda) with these functions. The gradients are written from the math
(each product of the forward's sum sends gy back to both of its factors), not as transposes of a fast forward.

Arguments are as the backend ops take them, already checked (minunet.functional); nothing is checked here.
Arithmetic is in the inputs' dtype: give float64 arrays for the ground truth. Every function returns new
arrays, except sgd_step, which updates param and velocity in place as the backend op does.

np.einsum is the formulas' sum written out: np.einsum("ncyx,ocyx->no", a, b)[n, o] is the sum of
a[n, c, y, x] * b[o, c, y, x] over the letters missing right of the arrow (c, y, x).
"""
import numpy as np


def _padded(x, pad):
    """x with `pad` rows and columns of zeros around each image: the zeros of "same" padding, made explicit."""
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


# ---------------------------------------------------------------------------------------------------------------
# conv3x3 (cross-correlation, as PyTorch's Conv2d); xp is x with `pad` zeros around it

def conv3x3(x, w, b, pad, relu=False):
    """y[n, o, i, j] = b[o] + sum over c, ky, kx of xp[n, c, i + ky, j + kx] * w[o, c, ky, kx];
    relu=True: max(y, 0). x (N, Ci, H, W), w (Co, Ci, 3, 3), b (Co,) or None -> y (N, Co, H-2+2pad, W-2+2pad)."""
    xp = _padded(x, pad)
    N, Ci, Hp, Wp = xp.shape
    Co = w.shape[0]
    y = np.zeros((N, Co, max(Hp - 2, 0), max(Wp - 2, 0)), x.dtype)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            window = xp[:, :, i:i + 3, j:j + 3]                        # (N, Ci, 3, 3): what y[:, :, i, j] sees
            y[:, :, i, j] = np.einsum("ncyx,ocyx->no", window, w)
    if b is not None:
        y += b.reshape(1, Co, 1, 1)
    return np.maximum(y, 0) if relu else y


def conv3x3_grad_input(gy, w, pad, x_shape):
    """gx = dL/dx. y[n, o, i, j] holds xp[n, c, i + ky, j + kx] * w[o, c, ky, kx], so
    gxp[n, c, i + ky, j + kx] += gy[n, o, i, j] * w[o, c, ky, kx]: every output pixel scatters its gy back
    through its 3x3 window. gx is gxp without the padding (its zeros are not inputs)."""
    N, Ci, H, W = x_shape
    gxp = np.zeros((N, Ci, H + 2 * pad, W + 2 * pad), gy.dtype)
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            gxp[:, :, i:i + 3, j:j + 3] += np.einsum("no,ocyx->ncyx", gy[:, :, i, j], w)
    return gxp[:, :, pad:pad + H, pad:pad + W].copy()


def conv3x3_grad_weight(x, gy, pad):
    """gw[o, c, ky, kx] = sum over n, i, j of gy[n, o, i, j] * xp[n, c, i + ky, j + kx]
    (the same products as the forward, each sending gy to its weight)."""
    xp = _padded(x, pad)
    gw = np.zeros((gy.shape[1], x.shape[1], 3, 3), x.dtype)
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            gw += np.einsum("no,ncyx->ocyx", gy[:, :, i, j], xp[:, :, i:i + 3, j:j + 3])
    return gw


def bias_grad(gy):
    """gb[c] = sum over n, i, j of gy[n, c, i, j] (b[c] is added once to every output of channel c)."""
    return np.array([gy[:, c].sum() for c in range(gy.shape[1])], gy.dtype)


# ---------------------------------------------------------------------------------------------------------------
# up_conv2x2: the transposed convolution of stride 2 (w in PyTorch's ConvTranspose2d layout (Ci, Co, 2, 2))

def up_conv2x2(x, w, b):
    """y[n, o, 2i + a, 2j + c] = b[o] + sum over ci of x[n, ci, i, j] * w[ci, o, a, c]: each input pixel
    becomes a 2x2 block of outputs. x (N, Ci, H, W) -> y (N, Co, 2H, 2W)."""
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    y = np.zeros((N, Co, 2 * H, 2 * W), x.dtype)
    for i in range(H):
        for j in range(W):                                        # einsum letters: k = ci, (y, x) = (a, c)
            y[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = np.einsum("nk,koyx->noyx", x[:, :, i, j], w)
    if b is not None:
        y += b.reshape(1, Co, 1, 1)
    return y


def up_conv2x2_grad_input(gy, w):
    """gx[n, ci, i, j] = sum over o, a, c of gy[n, o, 2i + a, 2j + c] * w[ci, o, a, c]."""
    N, Co, H2, W2 = gy.shape
    gx = np.zeros((N, w.shape[0], H2 // 2, W2 // 2), gy.dtype)
    for i in range(H2 // 2):
        for j in range(W2 // 2):
            block = gy[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]      # (N, Co, 2, 2): the outputs x[:, :, i, j] made
            gx[:, :, i, j] = np.einsum("noyx,koyx->nk", block, w)
    return gx


def up_conv2x2_grad_weight(x, gy):
    """gw[ci, o, a, c] = sum over n, i, j of x[n, ci, i, j] * gy[n, o, 2i + a, 2j + c]."""
    N, Ci, H, W = x.shape
    gw = np.zeros((Ci, gy.shape[1], 2, 2), x.dtype)
    for i in range(H):
        for j in range(W):
            gw += np.einsum("nk,noyx->koyx", x[:, :, i, j], gy[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2])
    return gw


# ---------------------------------------------------------------------------------------------------------------
# conv1x1: a matrix product per pixel, w (Co, Ci, 1, 1)

def conv1x1(x, w, b):
    """y[n, o, i, j] = b[o] + sum over c of x[n, c, i, j] * w[o, c, 0, 0]."""
    N, _, H, W = x.shape
    Co = w.shape[0]
    y = np.zeros((N, Co, H, W), x.dtype)
    for i in range(H):
        for j in range(W):
            y[:, :, i, j] = np.einsum("nc,oc->no", x[:, :, i, j], w[:, :, 0, 0])
    if b is not None:
        y += b.reshape(1, Co, 1, 1)
    return y


def conv1x1_grad_input(gy, w):
    """gx[n, c, i, j] = sum over o of gy[n, o, i, j] * w[o, c, 0, 0]."""
    N, _, H, W = gy.shape
    gx = np.zeros((N, w.shape[1], H, W), gy.dtype)
    for i in range(H):
        for j in range(W):
            gx[:, :, i, j] = np.einsum("no,oc->nc", gy[:, :, i, j], w[:, :, 0, 0])
    return gx


def conv1x1_grad_weight(x, gy):
    """gw[o, c, 0, 0] = sum over n, i, j of gy[n, o, i, j] * x[n, c, i, j]."""
    N, Ci, H, W = x.shape
    gw = np.zeros((gy.shape[1], Ci, 1, 1), x.dtype)
    for i in range(H):
        for j in range(W):
            gw[:, :, 0, 0] += np.einsum("no,nc->oc", gy[:, :, i, j], x[:, :, i, j])
    return gw


# ---------------------------------------------------------------------------------------------------------------
# max_pool2x2: window k = 2*dy + dx of output (i, j) is x[n, c, 2i + dy, 2j + dx]

def max_pool2x2(x):
    """y[n, c, i, j] = the largest of the window x[n, c, 2i:2i+2, 2j:2j+2]; argmax (uint8) = its index
    2*dy + dx in the window. Among equal values the lowest index wins; a NaN counts as the largest (the first
    NaN wins, and y is NaN): np.argmax's rules, which the kernels follow."""
    N, C, H, W = x.shape
    y = np.empty((N, C, H // 2, W // 2), x.dtype)
    argmax = np.empty(y.shape, np.uint8)
    for i in range(H // 2):
        for j in range(W // 2):
            window = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(N, C, 4)  # flattened: index 2*dy + dx
            k = np.argmax(window, axis=2)
            argmax[:, :, i, j] = k
            y[:, :, i, j] = np.take_along_axis(window, k[:, :, None], axis=2)[:, :, 0]
    return y, argmax


def max_pool2x2_grad(gy, argmax):
    """gx[n, c, 2i + dy, 2j + dx] = gy[n, c, i, j] where argmax[n, c, i, j] == 2*dy + dx, else 0:
    only the maximum of each window reached the output."""
    N, C, h, w = gy.shape
    gx = np.zeros((N, C, 2 * h, 2 * w), gy.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            chosen = argmax == 2 * dy + dx
            gx[:, :, dy::2, dx::2][chosen] = gy[chosen]            # the (dy, dx) corner of every window
    return gx


# ---------------------------------------------------------------------------------------------------------------
# relu, crop, concat: the elementwise and copying ops

def relu(x):
    """y = 0 where x < 0, else x (a NaN stays NaN, as in PyTorch)."""
    return np.where(x < 0, x.dtype.type(0), x)


def relu_grad(gy, y):
    """gx = gy where y > 0, else 0."""
    return np.where(y > 0, gy, gy.dtype.type(0))


def crop(x, top, left, h, w):
    """y[n, c, i, j] = x[n, c, top + i, left + j] for i < h, j < w."""
    return x[:, :, top:top + h, left:left + w].copy()


def crop_grad(gy, x_shape, top, left):
    """gx (x_shape) is zero except gx[n, c, top + i, left + j] = gy[n, c, i, j]: each output came from one input."""
    gx = np.zeros(x_shape, gy.dtype)
    gx[:, :, top:top + gy.shape[2], left:left + gy.shape[3]] = gy
    return gx


def concat(a, b):
    """y = a and b stacked along the channels: y[:, :ca] = a, y[:, ca:] = b with ca = a's channels."""
    N, ca, H, W = a.shape
    y = np.empty((N, ca + b.shape[1], H, W), a.dtype)
    y[:, :ca], y[:, ca:] = a, b
    return y


def concat_grad(gy, ca):
    """(ga, gb) = (gy[:, :ca], gy[:, ca:]): each part of y came from a or b."""
    return gy[:, :ca].copy(), gy[:, ca:].copy()


# ---------------------------------------------------------------------------------------------------------------
# dropout: the counter hash of kernels/common.cuh in Python ints, one element at a time

def lowbias32(v):
    """minunet_hash(v) of kernels/common.cuh, the "lowbias32" hash (Chris Wellons), for an int in [0, 2**32);
    `& 0xFFFFFFFF` is the wrap-around of the kernel's `unsigned int` multiplication."""
    v ^= v >> 16
    v = (v * 0x7FEB352D) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x846CA68B) & 0xFFFFFFFF
    v ^= v >> 16
    return v


def hash_uniform(seed, index):
    """minunet_hash_uniform(seed, index): the hash's top 24 bits as a fraction of 2**24, in [0, 1); exact as a
    float32 as well as here (a Python float)."""
    return (lowbias32(index ^ lowbias32(seed)) >> 8) / 2**24


def dropout(x, p, seed, offset=0):
    """Element i of x (flat index) is kept iff hash_uniform(seed, offset + i) >= p, where p is rounded to
    float32 first (the kernels compare in float). mask = 1/(1 - p) rounded to x's dtype where kept, else 0;
    y = x * mask. Returns (y, mask)."""
    p32, scale = float(np.float32(p)), x.dtype.type(1.0 / (1.0 - p))
    kept = [hash_uniform(seed, offset + i) >= p32 for i in range(x.size)]
    mask = np.where(np.array(kept, bool).reshape(x.shape), scale, x.dtype.type(0))
    return x * mask, mask


def dropout_grad(gy, mask):
    """gx = gy * mask (y = x * mask, mask fixed)."""
    return gy * mask


# ---------------------------------------------------------------------------------------------------------------
# softmax cross-entropy, one pixel at a time

def softmax_cross_entropy(logits, labels, weights, ignore_index, scale):
    """Over the pixels (n, i, j) whose label is not ignore_index, with z = logits[n, :, i, j],
    log p = z - max z - log(sum of exp(z - max z)) (log softmax; subtracting max z changes nothing but keeps
    exp finite) and weight = weights[n, i, j] (1 if weights is None):
        loss_sum = sum of weight * -log p[label]          (a Python float)
        grad[n, :, i, j] = scale * weight * (p - onehot(label)), and 0 at the ignored pixels.
    Returns (loss_sum, grad)."""
    N, K, H, W = logits.shape
    loss_sum, grad = 0.0, np.zeros(logits.shape, logits.dtype)
    for n, i, j in np.ndindex(N, H, W):
        label = int(labels[n, i, j])
        if label == ignore_index:
            continue
        z = logits[n, :, i, j]
        log_p = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
        weight = 1.0 if weights is None else weights[n, i, j]
        loss_sum += float(weight * -log_p[label])
        onehot = np.arange(K) == label
        grad[n, :, i, j] = scale * weight * (np.exp(log_p) - onehot)
    return loss_sum, grad


# ---------------------------------------------------------------------------------------------------------------
# SGD

def sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    """In place, PyTorch's SGD with momentum (dampening 0): g = grad + weight_decay * param;
    velocity = momentum * velocity + g; param = param - lr * velocity."""
    g = grad + weight_decay * param
    velocity[...] = momentum * velocity + g
    param[...] = param - lr * velocity
