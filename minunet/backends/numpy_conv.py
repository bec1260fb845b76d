"""The convolutions on the numpy device: conv3x3, up_conv2x2 (transposed, stride 2), conv1x1.

Every op is a handful of matrix products so BLAS does the work:
- conv1x1 is one product per image: y[n] = W (Co,Ci) @ x[n] (Ci,H*W).
- conv3x3 is the sum over its 9 taps of such products, each with the input window the tap sees. The
  windows are not copied: on the flattened image (Ci, H*W) output pixel (i, j) reads tap (ky, kx) at flat
  index (i*W + j) + (ky*W + kx), so if the output is computed on a "wide" grid of Ho rows of W (not Wo)
  pixels, each tap's window is the plain slice [ky*W + kx, ... + L) of the flat image, which BLAS reads
  in place. The wide grid's last W - Wo columns of each row are wrapped-around garbage, cropped at the end
  (and zero in the backward passes' gy, so that they add nothing). With few input channels (the first
  layer) the 9 slices are stacked into one im2col matrix: one product with K = 9*Ci instead of nine with
  K = Ci, which BLAS does badly.
- up_conv2x2 writes 4 disjoint output pixels per input pixel, so it is one product
  (Co*4, Ci) @ (Ci, H*W) followed by a reshape/transpose that interleaves the 2x2 blocks.
The backward ops are the exact transposes of these products (tests/test_conv_ops.py checks it with
dot-product tests). Inputs are validated by minunet.functional; the dtype of x is kept (float32 or float64).
"""
import numpy as np

TAPS = [(ky, kx) for ky in range(3) for kx in range(3)]
IM2COL_MAX_K = 32  # conv3x3 forward: stack the taps into one product when 9*Ci is at most this


def _flat(a):
    """(N, C, H, W) -> (N, C, H*W), a view for a C-contiguous array (also for N = 0, where -1 is ambiguous)."""
    N, C, H, W = a.shape
    return a.reshape(N, C, H * W)


def _pad(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _add_bias(y, b):
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _wide_length(W, Ho, Wo):
    """Flat length of the wide grid up to the last real output pixel; tap (ky, kx) starts at ky*W + kx."""
    return (Ho - 1) * W + Wo


def _to_wide(gy, W):
    """gy (N, Co, Ho, Wo) -> (N, Co, L) on the wide grid of row length W, zeros in the garbage columns."""
    N, Co, Ho, Wo = gy.shape
    wide = np.zeros((N, Co, Ho, W), gy.dtype)
    wide[..., :Wo] = gy
    return wide.reshape(N, Co, Ho * W)[:, :, :_wide_length(W, Ho, Wo)]


class ConvNumpyOps:
    # ---- conv3x3: y[n,o,i,j] = sum_{c,ky,kx} xpad[n,c,i+ky,j+kx] w[o,c,ky,kx] + b[o] ----

    def conv3x3(self, x, w, b, pad, relu=False):
        """relu=True returns max(conv3x3(x, w, b), 0): the fused bias + ReLU of the kernels' epilogue."""
        xp = _pad(x, pad)
        N, Ci, H, W = xp.shape
        Co, Ho, Wo = w.shape[0], max(H - 2, 0), max(W - 2, 0)
        yw = np.zeros((N, Co, Ho * W), x.dtype)
        if Ho and Wo:
            L, xf = _wide_length(W, Ho, Wo), _flat(xp)
            if 9 * Ci <= IM2COL_MAX_K:
                cols = np.stack([xf[:, :, ky * W + kx:ky * W + kx + L] for ky, kx in TAPS], axis=2)
                yw[:, :, :L] = w.reshape(Co, -1) @ cols.reshape(N, Ci * 9, L)  # rows (c, ky, kx), as w's
            else:
                for ky, kx in TAPS:
                    yw[:, :, :L] += w[:, :, ky, kx] @ xf[:, :, ky * W + kx:ky * W + kx + L]
        y = _add_bias(np.ascontiguousarray(yw.reshape(N, Co, Ho, W)[..., :Wo]), b)
        return np.maximum(y, 0, out=y) if relu else y

    def conv3x3_grad_input(self, gy, w, pad, x_shape):
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

    def conv3x3_grad_weight(self, x, gy, pad):
        xp = _pad(x, pad)
        Ci, W = xp.shape[1], xp.shape[3]
        _, Co, Ho, Wo = gy.shape
        gw = np.zeros((Co, Ci, 3, 3), x.dtype)
        if Ho and Wo:
            L, g, xf = _wide_length(W, Ho, Wo), _to_wide(gy, W), _flat(xp)
            for ky, kx in TAPS:
                gw[:, :, ky, kx] = (g @ xf[:, :, ky * W + kx:ky * W + kx + L].transpose(0, 2, 1)).sum(axis=0)
        return gw

    # ---- up_conv2x2: y[n,o,2i+a,2j+c] = sum_ci x[n,ci,i,j] w[ci,o,a,c] + b[o] ----

    def up_conv2x2(self, x, w, b):
        N, Ci, H, W = x.shape
        Co = w.shape[1]
        # (Co*2*2, Ci) @ (Ci, H*W): row (o,a,c) holds the output pixels y[o, 2i+a, 2j+c] for all (i,j).
        blocks = w.reshape(Ci, Co * 4).T @ _flat(x)
        y = blocks.reshape(N, Co, 2, 2, H, W).transpose(0, 1, 4, 2, 5, 3).reshape(N, Co, 2 * H, 2 * W)
        return _add_bias(np.ascontiguousarray(y), b)

    @staticmethod
    def _split_2x2_blocks(gy):
        """(N, Co, 2H, 2W) -> (N, Co*2*2, H*W): the inverse of up_conv2x2's interleave."""
        N, Co, H2, W2 = gy.shape
        H, W = H2 // 2, W2 // 2
        return gy.reshape(N, Co, H, 2, W, 2).transpose(0, 1, 3, 5, 2, 4).reshape(N, Co * 4, H * W)

    def up_conv2x2_grad_input(self, gy, w):
        N, _, H2, W2 = gy.shape
        Ci = w.shape[0]
        gx = w.reshape(Ci, -1) @ self._split_2x2_blocks(gy)
        return gx.reshape(N, Ci, H2 // 2, W2 // 2)

    def up_conv2x2_grad_weight(self, x, gy):
        Ci, Co = x.shape[1], gy.shape[1]
        gw = (_flat(x) @ self._split_2x2_blocks(gy).transpose(0, 2, 1)).sum(axis=0)
        return gw.reshape(Ci, Co, 2, 2)

    # ---- conv1x1: y[n,o,i,j] = sum_c x[n,c,i,j] w[o,c] + b[o] ----

    def conv1x1(self, x, w, b):
        N, _, H, W = x.shape
        y = w.reshape(w.shape[0], -1) @ _flat(x)
        return _add_bias(y.reshape(N, w.shape[0], H, W), b)

    def conv1x1_grad_input(self, gy, w):
        N, _, H, W = gy.shape
        gx = w.reshape(w.shape[0], -1).T @ _flat(gy)
        return gx.reshape(N, w.shape[1], H, W)

    def conv1x1_grad_weight(self, x, gy):
        gw = (_flat(gy) @ _flat(x).transpose(0, 2, 1)).sum(axis=0)
        return gw.reshape(gy.shape[1], x.shape[1], 1, 1)
