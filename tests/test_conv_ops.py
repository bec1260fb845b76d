"""The convolution ops (conv3x3, up_conv2x2, conv1x1), forward and backward, on every device.

1. The numpy ops against dead-simple loop references written here (tiny sizes, float64); the loop
   references themselves are checked against scipy.signal.correlate2d and np.kron.
2. Adjoint (dot-product) tests in float64: <op(x), gy> == <x, grad_input(gy)> and
   <op(x; w), gy> == <w, grad_weight(x, gy)>, so the backward ops are the exact transposes of the forward.
3. Every kernel (every version) on the kernel devices against the numpy ops: both dtypes, both paddings,
   with and without bias, odd shapes that are not multiples of any tile, outputs fully written (the sim
   poisons outputs with NaN).
"""
import numpy as np
import pytest
import scipy.signal

from conftest import DTYPES, KERNEL_DEVICES, assert_close, assert_close_dtype
from minunet.backends import get_backend
from minunet.backends.kernel_conv import VERSIONS

NP = get_backend("numpy")


# ---------------------------------------------------------------- loop references (float64, tiny sizes)

def loop_conv3x3(x, w, b, pad):
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    Ho, Wo = H - 2 + 2 * pad, W - 2 + 2 * pad
    y = np.zeros((N, Co, Ho, Wo))
    for n in range(N):
        for o in range(Co):
            for i in range(Ho):
                for j in range(Wo):
                    s = 0.0 if b is None else b[o]
                    for c in range(Ci):
                        for ky in range(3):
                            for kx in range(3):
                                p, q = i + ky - pad, j + kx - pad
                                if 0 <= p < H and 0 <= q < W:
                                    s += x[n, c, p, q] * w[o, c, ky, kx]
                    y[n, o, i, j] = s
    return y


def loop_conv3x3_grads(x, w, gy, pad):
    """The forward loop with every multiply-add turned into the two scatters of its derivative."""
    N, Ci, H, W = x.shape
    _, Co, Ho, Wo = gy.shape
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(Ci):
                        for ky in range(3):
                            for kx in range(3):
                                p, q = i + ky - pad, j + kx - pad
                                if 0 <= p < H and 0 <= q < W:
                                    gx[n, c, p, q] += gy[n, o, i, j] * w[o, c, ky, kx]
                                    gw[o, c, ky, kx] += gy[n, o, i, j] * x[n, c, p, q]
    return gx, gw


def loop_up_conv2x2(x, w, b):
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    y = np.zeros((N, Co, 2 * H, 2 * W))
    for n in range(N):
        for o in range(Co):
            for i in range(2 * H):
                for j in range(2 * W):
                    s = 0.0 if b is None else b[o]
                    for c in range(Ci):
                        s += x[n, c, i // 2, j // 2] * w[c, o, i % 2, j % 2]
                    y[n, o, i, j] = s
    return y


def loop_up_conv2x2_grads(x, w, gy):
    N, Ci, H, W = x.shape
    Co = w.shape[1]
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for i in range(2 * H):
                for j in range(2 * W):
                    for c in range(Ci):
                        gx[n, c, i // 2, j // 2] += gy[n, o, i, j] * w[c, o, i % 2, j % 2]
                        gw[c, o, i % 2, j % 2] += gy[n, o, i, j] * x[n, c, i // 2, j // 2]
    return gx, gw


def loop_conv1x1(x, w, b):
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    y = np.zeros((N, Co, H, W))
    for n in range(N):
        for o in range(Co):
            for i in range(H):
                for j in range(W):
                    s = 0.0 if b is None else b[o]
                    for c in range(Ci):
                        s += x[n, c, i, j] * w[o, c, 0, 0]
                    y[n, o, i, j] = s
    return y


def loop_conv1x1_grads(x, w, gy):
    N, Ci, H, W = x.shape
    Co = w.shape[0]
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for i in range(H):
                for j in range(W):
                    for c in range(Ci):
                        gx[n, c, i, j] += gy[n, o, i, j] * w[o, c, 0, 0]
                        gw[o, c, 0, 0] += gy[n, o, i, j] * x[n, c, i, j]
    return gx, gw


def randn(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


EXACT = dict(atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------- 1. the loop references, checked independently

@pytest.mark.parametrize("pad", [0, 1])
def test_loop_conv3x3_matches_scipy_correlate2d(rng, pad):
    x, w, b = randn(rng, 2, 3, 5, 6), randn(rng, 4, 3, 3, 3), randn(rng, 4)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = np.array([[sum(scipy.signal.correlate2d(xp[n, c], w[o, c], mode="valid") for c in range(3)) + b[o]
                     for o in range(4)] for n in range(2)])
    assert_close(loop_conv3x3(x, w, b, pad), ref, **EXACT)


def test_loop_up_conv2x2_matches_kron(rng):
    x, w = randn(rng, 2, 3, 4, 3), randn(rng, 3, 5, 2, 2)
    # Each input pixel becomes its value times the 2x2 kernel: a Kronecker product per (c, o).
    ref = np.array([[sum(np.kron(x[n, c], w[c, o]) for c in range(3)) for o in range(5)] for n in range(2)])
    assert_close(loop_up_conv2x2(x, w, None), ref, **EXACT)


def test_loop_conv3x3_on_a_delta_image_copies_the_flipped_kernel():
    # Correlation with a single 1 at (2, 2) of a 5x5 image: y[i, j] = w[2-i, 2-j] for i, j in 0..2 (pad 0).
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    assert_close(loop_conv3x3(x, w, None, 0)[0, 0], w[0, 0, ::-1, ::-1], **EXACT)


# ---------------------------------------------------------------- 1. numpy ops against the loop references

@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_conv3x3_matches_loops(rng, pad, with_bias):
    x, w, gy_shape = randn(rng, 2, 3, 5, 6), randn(rng, 4, 3, 3, 3), (2, 4, 3 + 2 * pad, 4 + 2 * pad)
    b = randn(rng, 4) if with_bias else None
    gy = randn(rng, *gy_shape)
    assert_close(NP.conv3x3(x, w, b, pad), loop_conv3x3(x, w, b, pad), **EXACT, name="y")
    gx_ref, gw_ref = loop_conv3x3_grads(x, w, gy, pad)
    assert_close(NP.conv3x3_grad_input(gy, w, pad, x.shape), gx_ref, **EXACT, name="gx")
    assert_close(NP.conv3x3_grad_weight(x, gy, pad), gw_ref, **EXACT, name="gw")


@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_up_conv2x2_matches_loops(rng, with_bias):
    x, w, gy = randn(rng, 2, 3, 4, 3), randn(rng, 3, 5, 2, 2), randn(rng, 2, 5, 8, 6)
    b = randn(rng, 5) if with_bias else None
    assert_close(NP.up_conv2x2(x, w, b), loop_up_conv2x2(x, w, b), **EXACT, name="y")
    gx_ref, gw_ref = loop_up_conv2x2_grads(x, w, gy)
    assert_close(NP.up_conv2x2_grad_input(gy, w), gx_ref, **EXACT, name="gx")
    assert_close(NP.up_conv2x2_grad_weight(x, gy), gw_ref, **EXACT, name="gw")


@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_conv1x1_matches_loops(rng, with_bias):
    x, w, gy = randn(rng, 2, 3, 4, 5), randn(rng, 2, 3, 1, 1), randn(rng, 2, 2, 4, 5)
    b = randn(rng, 2) if with_bias else None
    assert_close(NP.conv1x1(x, w, b), loop_conv1x1(x, w, b), **EXACT, name="y")
    gx_ref, gw_ref = loop_conv1x1_grads(x, w, gy)
    assert_close(NP.conv1x1_grad_input(gy, w), gx_ref, **EXACT, name="gx")
    assert_close(NP.conv1x1_grad_weight(x, gy), gw_ref, **EXACT, name="gw")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_conv_ops_keep_the_dtype(rng, dtype):
    def r(*shape):
        return randn(rng, *shape, dtype=dtype)
    x, b = r(1, 2, 5, 5), r(3)
    w3, gy3 = r(3, 2, 3, 3), r(1, 3, 3, 3)
    wu, gyu = r(2, 3, 2, 2), r(1, 3, 10, 10)
    w1, gy1 = r(3, 2, 1, 1), r(1, 3, 5, 5)
    outs = {"conv3x3": NP.conv3x3(x, w3, b, 0), "conv3x3_grad_input": NP.conv3x3_grad_input(gy3, w3, 0, x.shape),
            "conv3x3_grad_weight": NP.conv3x3_grad_weight(x, gy3, 0),
            "up_conv2x2": NP.up_conv2x2(x, wu, b), "up_conv2x2_grad_input": NP.up_conv2x2_grad_input(gyu, wu),
            "up_conv2x2_grad_weight": NP.up_conv2x2_grad_weight(x, gyu),
            "conv1x1": NP.conv1x1(x, w1, b), "conv1x1_grad_input": NP.conv1x1_grad_input(gy1, w1),
            "conv1x1_grad_weight": NP.conv1x1_grad_weight(x, gy1)}
    for op, out in outs.items():
        assert out.dtype == dtype, f"{op}: dtype {out.dtype}, expected {np.dtype(dtype)}"
        assert out.flags.c_contiguous, f"{op}: output is not C-contiguous"


# ---------------------------------------------------------------- 2. adjoint (dot-product) tests

def _dot(a, b):
    return float(np.vdot(a, b))


def _assert_adjoint(lhs, rhs, what):
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), f"{what}: <op x, gy> = {lhs!r} but <x, op^T gy> = {rhs!r}"


@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 12, 11), (3, 1, 19, 5)])
def test_conv3x3_backward_is_the_transpose(rng, pad, shape):
    N, Ci, H, W = shape
    Co = 5
    x, w = randn(rng, *shape), randn(rng, Co, Ci, 3, 3)
    gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad)
    y = NP.conv3x3(x, w, None, pad)
    _assert_adjoint(_dot(y, gy), _dot(x, NP.conv3x3_grad_input(gy, w, pad, x.shape)), "grad_input")
    _assert_adjoint(_dot(y, gy), _dot(w, NP.conv3x3_grad_weight(x, gy, pad)), "grad_weight")


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 4, 3)])
def test_up_conv2x2_backward_is_the_transpose(rng, shape):
    N, Ci, H, W = shape
    Co = 4
    x, w, gy = randn(rng, *shape), randn(rng, Ci, Co, 2, 2), randn(rng, N, Co, 2 * H, 2 * W)
    y = NP.up_conv2x2(x, w, None)
    _assert_adjoint(_dot(y, gy), _dot(x, NP.up_conv2x2_grad_input(gy, w)), "grad_input")
    _assert_adjoint(_dot(y, gy), _dot(w, NP.up_conv2x2_grad_weight(x, gy)), "grad_weight")


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 4, 3)])
def test_conv1x1_backward_is_the_transpose(rng, shape):
    N, Ci, H, W = shape
    Co = 2
    x, w, gy = randn(rng, *shape), randn(rng, Co, Ci, 1, 1), randn(rng, N, Co, H, W)
    y = NP.conv1x1(x, w, None)
    _assert_adjoint(_dot(y, gy), _dot(x, NP.conv1x1_grad_input(gy, w)), "grad_input")
    _assert_adjoint(_dot(y, gy), _dot(w, NP.conv1x1_grad_weight(x, gy)), "grad_weight")


# ---------------------------------------------------------------- 3. kernels against numpy

# (N, Ci, H, W, Co): channel counts 1, 3, 17; sizes that fill no 16x16 tile evenly, and one (19x37 with
# pad 1 -> 2 x 3 tiles) that spans several tiles; Co = 9 and 17 leave a partial group of 8 output channels.
CONV_SHAPES = [(2, 3, 7, 9, 2), (1, 17, 12, 11, 9), (2, 1, 19, 5, 1), (1, 3, 19, 37, 17)]
UP_SHAPES = [(2, 3, 7, 9, 2), (1, 17, 4, 3, 5), (2, 1, 5, 6, 3)]


@pytest.fixture(params=KERNEL_DEVICES)
def backend(request):
    return get_backend(request.param)


def _terms_scale(terms):
    """Widen atol for sums of `terms` products of unit-sized numbers (rounding grows about like sqrt)."""
    return max(1.0, float(np.sqrt(terms)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS["conv3x3_forward"])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_conv3x3_forward(backend, rng, dtype, version, pad, with_bias):
    for N, Ci, H, W, Co in CONV_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 3, 3, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        dev = [None if a is None else backend.asarray(a) for a in (x, w, b)]
        y = backend.to_numpy(backend.conv3x3(*dev, pad, version=version))
        assert y.dtype == dtype
        assert_close_dtype(y, NP.conv3x3(x, w, b, pad), dtype, name=f"conv3x3 v{version} {x.shape}",
                           scale=_terms_scale(9 * Ci))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pad", [0, 1])
def test_kernel_conv3x3_backward(backend, rng, dtype, pad):
    for N, Ci, H, W, Co in CONV_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 3, 3, dtype=dtype)
        gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, dtype=dtype)
        dx, dw, dgy = backend.asarray(x), backend.asarray(w), backend.asarray(gy)
        gx = backend.to_numpy(backend.conv3x3_grad_input(dgy, dw, pad, x.shape))
        gw = backend.to_numpy(backend.conv3x3_grad_weight(dx, dgy, pad))
        assert gx.dtype == dtype and gw.dtype == dtype
        assert_close_dtype(gx, NP.conv3x3_grad_input(gy, w, pad, x.shape), dtype, name=f"gx {x.shape}",
                           scale=_terms_scale(9 * Co))
        assert_close_dtype(gw, NP.conv3x3_grad_weight(x, gy, pad), dtype, name=f"gw {x.shape}",
                           scale=_terms_scale(gy[:, 0].size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_up_conv2x2(backend, rng, dtype, with_bias):
    for N, Ci, H, W, Co in UP_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Ci, Co, 2, 2, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        gy = randn(rng, N, Co, 2 * H, 2 * W, dtype=dtype)
        dx, dw, dgy = backend.asarray(x), backend.asarray(w), backend.asarray(gy)
        y = backend.to_numpy(backend.up_conv2x2(dx, dw, None if b is None else backend.asarray(b)))
        gx = backend.to_numpy(backend.up_conv2x2_grad_input(dgy, dw))
        gw = backend.to_numpy(backend.up_conv2x2_grad_weight(dx, dgy))
        assert y.dtype == gx.dtype == gw.dtype == dtype
        assert_close_dtype(y, NP.up_conv2x2(x, w, b), dtype, name=f"y {x.shape}", scale=_terms_scale(Ci))
        assert_close_dtype(gx, NP.up_conv2x2_grad_input(gy, w), dtype, name=f"gx {x.shape}",
                           scale=_terms_scale(4 * Co))
        assert_close_dtype(gw, NP.up_conv2x2_grad_weight(x, gy), dtype, name=f"gw {x.shape}",
                           scale=_terms_scale(N * H * W))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_conv1x1(backend, rng, dtype, with_bias):
    for N, Ci, H, W, Co in UP_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 1, 1, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        gy = randn(rng, N, Co, H, W, dtype=dtype)
        dx, dw, dgy = backend.asarray(x), backend.asarray(w), backend.asarray(gy)
        y = backend.to_numpy(backend.conv1x1(dx, dw, None if b is None else backend.asarray(b)))
        gx = backend.to_numpy(backend.conv1x1_grad_input(dgy, dw))
        gw = backend.to_numpy(backend.conv1x1_grad_weight(dx, dgy))
        assert y.dtype == gx.dtype == gw.dtype == dtype
        assert_close_dtype(y, NP.conv1x1(x, w, b), dtype, name=f"y {x.shape}", scale=_terms_scale(Ci))
        assert_close_dtype(gx, NP.conv1x1_grad_input(gy, w), dtype, name=f"gx {x.shape}", scale=_terms_scale(Co))
        assert_close_dtype(gw, NP.conv1x1_grad_weight(x, gy), dtype, name=f"gw {x.shape}",
                           scale=_terms_scale(N * H * W))


def test_kernel_grad_weight_is_deterministic(backend, rng):
    # Block reductions, no atomics: the same inputs give bit-identical weight gradients.
    x = backend.asarray(randn(rng, 2, 3, 12, 11, dtype=np.float32))
    gy = backend.asarray(randn(rng, 2, 4, 10, 9, dtype=np.float32))
    first = backend.to_numpy(backend.conv3x3_grad_weight(x, gy, 0))
    assert np.array_equal(first, backend.to_numpy(backend.conv3x3_grad_weight(x, gy, 0)))


@pytest.mark.parametrize("version", VERSIONS["conv3x3_forward"])
def test_kernel_conv3x3_on_an_image_too_small_for_valid_padding(backend, rng, version):
    # A 2x2 image with pad 0 has a 0x0 output: nothing to launch, no crash, and the gradients are zeros.
    x, w = randn(rng, 2, 3, 2, 2), randn(rng, 4, 3, 3, 3)
    dx, dw = backend.asarray(x), backend.asarray(w)
    y = backend.conv3x3(dx, dw, backend.asarray(randn(rng, 4)), 0, version=version)
    assert y.shape == (2, 4, 0, 0)
    gy = backend.zeros((2, 4, 0, 0), np.float64)
    assert_close(backend.to_numpy(backend.conv3x3_grad_input(gy, dw, 0, x.shape)), np.zeros(x.shape), **EXACT)
    assert_close(backend.to_numpy(backend.conv3x3_grad_weight(dx, gy, 0)), np.zeros(w.shape), **EXACT)


def test_kernel_conv_rejects_an_unknown_version(backend, rng):
    x, w = backend.asarray(randn(rng, 1, 1, 4, 4)), backend.asarray(randn(rng, 1, 1, 3, 3))
    with pytest.raises(ValueError, match="version"):
        backend.conv3x3(x, w, None, 0, version=99)
