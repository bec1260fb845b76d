"""The kernel devices (cuda and sim), part 2: launch code for every op that is not a convolution.

Kernels: kernels/max_pool2x2.cu, elementwise.cu, softmax_cross_entropy.cu, sgd.cu. The grid and block are
chosen here, once, for both devices. Each op takes an optional `version=` (the N of `<kernel>_v<N>`);
DEFAULT_VERSIONS says which version runs when it is not given, so a faster kernel can be added and promoted
without touching the callers. Argument checks are shared with the numpy backend.
"""
import numpy as np

from .grid import cdiv

from .numpy_misc import (check_concat, check_concat_grad, check_dropout, check_loss, check_pool_grad,
                         check_pool_input, check_real, check_same, check_sgd, check_window, dropout_scale)

# kernel name (without _v<N>) -> the version launched by default
DEFAULT_VERSIONS = {
    "max_pool2x2_forward": 1,
    "max_pool2x2_backward": 1,
    "relu_forward": 1,
    "relu_backward": 1,
    "copy_window": 1,
    "fill": 1,
    "multiply": 1,
    "dropout_forward": 1,
    "bias_grad": 1,
    "softmax_cross_entropy": 1,
    "sgd_step": 1,
}

BLOCK = 256  # threads per block for the one-thread-per-element kernels; a power of two (the reductions need one)
INT_LIMIT = 2**31  # kernels index with int


def _check_int_size(name, size):
    if size >= INT_LIMIT:
        raise ValueError(f"{name} has {size} elements; the kernels index with 32-bit int (at most {INT_LIMIT - 1})")


class MiscKernelOps:
    def _kernel(self, op, version):
        return f"{op}_v{DEFAULT_VERSIONS[op] if version is None else int(version)}"

    def _launch_1d(self, stem, op, version, dtype, n, args):
        """One thread per element: n threads in blocks of BLOCK (nothing to do when n == 0)."""
        _check_int_size(op, n)
        if n > 0:
            self.launch(stem, self._kernel(op, version), dtype, (cdiv(n, BLOCK),), (BLOCK,), args)

    # --- bias gradient: one block per channel, shared-memory reduction ---
    def bias_grad(self, gy, version=None):
        check_real("gy", gy, ndim=4)
        N, C, H, W = gy.shape
        _check_int_size("gy", gy.size)
        gb = self.empty((C,), gy.dtype)
        if C > 0:
            self.launch("elementwise", self._kernel("bias_grad", version), gy.dtype, (C,), (BLOCK,),
                        (gy, gb, np.int32(N), np.int32(C), np.int32(H * W)), shared_mem=BLOCK * gy.itemsize)
        return gb

    # --- 2x2 max pooling ---
    def max_pool2x2(self, x, version=None):
        check_pool_input(x)
        N, C, H, W = x.shape
        y = self.empty((N, C, H // 2, W // 2), x.dtype)
        argmax = self.empty((N, C, H // 2, W // 2), np.uint8)
        _check_int_size("x", x.size)
        self._launch_1d("max_pool2x2", "max_pool2x2_forward", version, x.dtype, y.size,
                        (x, y, argmax, np.int32(N), np.int32(C), np.int32(H), np.int32(W)))
        return y, argmax

    def max_pool2x2_grad(self, gy, argmax, version=None):
        check_pool_grad(gy, argmax)
        N, C, h, w = gy.shape
        gx = self.empty((N, C, 2 * h, 2 * w), gy.dtype)
        self._launch_1d("max_pool2x2", "max_pool2x2_backward", version, gy.dtype, gx.size,
                        (gy, argmax, gx, np.int32(N), np.int32(C), np.int32(2 * h), np.int32(2 * w)))
        return gx

    # --- relu ---
    def relu(self, x, version=None):
        check_real("x", x)
        y = self.empty(x.shape, x.dtype)
        self._launch_1d("elementwise", "relu_forward", version, x.dtype, x.size, (x, y, np.int32(x.size)))
        return y

    def relu_grad(self, gy, y, version=None):
        check_real("gy", gy)
        check_same("gy", gy, "y", y)
        gx = self.empty(gy.shape, gy.dtype)
        self._launch_1d("elementwise", "relu_backward", version, gy.dtype, gy.size, (gy, y, gx, np.int32(gy.size)))
        return gx

    # --- crop and concat: all four are copies of an (N, C, h, w) window between NCHW arrays ---
    def _copy_window(self, src, src_at, dst, dst_at, window, version=None):
        """dst[n, dc+c, dy+i, dx+j] = src[n, sc+c, sy+i, sx+j] for (n, c, i, j) in window = (N, C, h, w)."""
        n = int(np.prod(window))
        args = (src, *map(np.int32, src.shape[1:]), *map(np.int32, src_at),
                dst, *map(np.int32, dst.shape[1:]), *map(np.int32, dst_at), *map(np.int32, window))
        self._launch_1d("elementwise", "copy_window", version, src.dtype, n, args)

    def _fill(self, shape, dtype, value):
        y = self.empty(shape, dtype)
        self._launch_1d("elementwise", "fill", None, dtype, y.size, (y, self.real(dtype, value), np.int32(y.size)))
        return y

    def crop(self, x, top, left, h, w, version=None):
        check_real("x", x, ndim=4)
        check_window(x.shape, top, left, h, w)
        _check_int_size("x", x.size)
        N, C = x.shape[:2]
        y = self.empty((N, C, h, w), x.dtype)
        self._copy_window(x, (0, top, left), y, (0, 0, 0), (N, C, h, w), version)
        return y

    def crop_grad(self, gy, x_shape, top, left, version=None):
        check_real("gy", gy, ndim=4)
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 4 or x_shape[:2] != gy.shape[:2]:
            raise ValueError(f"crop_grad: x_shape {x_shape} must be (N, C, H, W) with N, C of gy {gy.shape}")
        check_window(x_shape, top, left, gy.shape[2], gy.shape[3])
        _check_int_size("x_shape", int(np.prod(x_shape)))
        gx = self._fill(x_shape, gy.dtype, 0.0)
        self._copy_window(gy, (0, 0, 0), gx, (0, top, left), gy.shape, version)
        return gx

    def concat(self, a, b, version=None):
        check_concat(a, b)
        N, ca, H, W = a.shape
        cb = b.shape[1]
        y = self.empty((N, ca + cb, H, W), a.dtype)
        _check_int_size("concat output", y.size)
        self._copy_window(a, (0, 0, 0), y, (0, 0, 0), a.shape, version)
        self._copy_window(b, (0, 0, 0), y, (ca, 0, 0), b.shape, version)
        return y

    def concat_grad(self, gy, ca, version=None):
        check_concat_grad(gy, ca)
        _check_int_size("gy", gy.size)
        N, C, H, W = gy.shape
        ga = self.empty((N, ca, H, W), gy.dtype)
        gb = self.empty((N, C - ca, H, W), gy.dtype)
        self._copy_window(gy, (0, 0, 0), ga, (0, 0, 0), ga.shape, version)
        self._copy_window(gy, (ca, 0, 0), gb, (0, 0, 0), gb.shape, version)
        return ga, gb

    # --- dropout: the mask comes from the counter hash of (seed, flat index), as in NumPy ---
    def dropout(self, x, p, seed, offset=0, version=None):
        check_dropout(x, p, seed, offset)
        y = self.empty(x.shape, x.dtype)
        mask = self.empty(x.shape, x.dtype)
        self._launch_1d("elementwise", "dropout_forward", version, x.dtype, x.size,
                        (x, y, mask, np.int32(x.size), np.uint32(seed), np.uint32(offset), np.float32(p),
                         dropout_scale(p, x.dtype)))
        return y, mask

    def dropout_grad(self, gy, mask, version=None):
        check_real("gy", gy)
        check_same("gy", gy, "mask", mask)
        gx = self.empty(gy.shape, gy.dtype)
        self._launch_1d("elementwise", "multiply", version, gy.dtype, gy.size, (gy, mask, gx, np.int32(gy.size)))
        return gx

    # --- softmax cross-entropy: one fused kernel; it writes per-block loss sums, added here ---
    def softmax_cross_entropy(self, logits, labels, weights, ignore_index, scale, version=None):
        check_loss(logits, labels, weights, ignore_index)
        N, K, H, W = logits.shape
        _check_int_size("logits", logits.size)
        grad = self.empty(logits.shape, logits.dtype)
        pixels = N * H * W
        if pixels == 0:
            return 0.0, grad
        blocks = cdiv(pixels, BLOCK)
        partials = self.empty((blocks,), np.float64)  # double even for float logits: see the kernel's header
        has_weights = weights is not None
        self.launch("softmax_cross_entropy", self._kernel("softmax_cross_entropy", version), logits.dtype,
                    (blocks,), (BLOCK,),
                    (logits, labels, weights if has_weights else logits,  # any real* when unused
                     np.int32(has_weights), np.int32(ignore_index), self.real(logits.dtype, scale),
                     np.int32(N), np.int32(K), np.int32(H * W), grad, partials),
                    shared_mem=BLOCK * 8)
        return float(self.xp.sum(partials)), grad

    # --- SGD with momentum, in place ---
    def sgd_step(self, param, grad, velocity, lr, momentum, weight_decay, version=None):
        check_sgd(param, grad, velocity)
        real = param.dtype
        self._launch_1d("sgd", "sgd_step", version, real, param.size,
                        (param, grad, velocity, np.int32(param.size),
                         self.real(real, lr), self.real(real, momentum), self.real(real, weight_decay)))
