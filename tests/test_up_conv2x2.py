"""up_conv2x2 (the transposed convolution of stride 2), forward and backward, against minunet/reference.py.

1. The reference itself: against np.kron, and its gradients as the exact transposes of its forward.
2. The numpy device's fast path against the reference (float64) and as the transpose of itself.
3. The kernels on the kernel devices against the reference (in float64), both dtypes, with and without bias,
   odd shapes, NaN-poisoned outputs: the default versions, then every version (also in GPU arithmetic).
"""
import numpy as np
import pytest

from conftest import (DTYPES, as_float64, assert_adjoint, assert_close, assert_close_dtype, assert_outputs_keep, randn,
                      run, terms_scale)
from minunet import reference
from minunet.backends import get_backend
from minunet.ops.launching import VERSIONS

NP = get_backend("numpy")
EXACT = dict(atol=1e-12, rtol=1e-12)


def test_reference_up_conv2x2_matches_kron(rng):
    x, w = randn(rng, 2, 3, 4, 3), randn(rng, 3, 5, 2, 2)
    # Each input pixel becomes its value times the 2x2 kernel: a Kronecker product per (c, o).
    ref = np.array([[sum(np.kron(x[n, c], w[c, o]) for c in range(3)) for o in range(5)] for n in range(2)])
    assert_close(reference.up_conv2x2(x, w, None), ref, **EXACT)


@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_up_conv2x2_matches_the_reference(rng, with_bias):
    x, w, gy = randn(rng, 2, 3, 4, 3), randn(rng, 3, 5, 2, 2), randn(rng, 2, 5, 8, 6)
    b = randn(rng, 5) if with_bias else None
    assert_close(NP.up_conv2x2(x, w, b), reference.up_conv2x2(x, w, b), **EXACT, name="y")
    assert_close(NP.up_conv2x2_grad_input(gy, w), reference.up_conv2x2_grad_input(gy, w), **EXACT, name="gx")
    assert_close(NP.up_conv2x2_grad_weight(x, gy), reference.up_conv2x2_grad_weight(x, gy), **EXACT, name="gw")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_up_conv2x2_keeps_the_dtype(rng, dtype):
    x, w, b, gy = (randn(rng, *s, dtype=dtype) for s in [(1, 2, 5, 5), (2, 3, 2, 2), (3,), (1, 3, 10, 10)])
    outs = {"up_conv2x2": NP.up_conv2x2(x, w, b), "up_conv2x2_grad_input": NP.up_conv2x2_grad_input(gy, w),
            "up_conv2x2_grad_weight": NP.up_conv2x2_grad_weight(x, gy)}
    assert_outputs_keep(dtype, outs)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 4, 3)])
def test_up_conv2x2_backward_is_the_transpose(rng, ops, shape):
    N, Ci, H, W = shape
    Co = 4
    x, w, gy = randn(rng, *shape), randn(rng, Ci, Co, 2, 2), randn(rng, N, Co, 2 * H, 2 * W)
    y_dot_gy = np.vdot(ops.up_conv2x2(x, w, None), gy)
    assert_adjoint(y_dot_gy, np.vdot(x, ops.up_conv2x2_grad_input(gy, w)), "grad_input")
    assert_adjoint(y_dot_gy, np.vdot(w, ops.up_conv2x2_grad_weight(x, gy)), "grad_weight")


# ---------------------------------------------------------------- kernels against the reference

# (N, Ci, H, W, Co)
SHAPES = [(2, 3, 7, 9, 2), (1, 17, 4, 3, 5), (2, 1, 5, 6, 3)]
# no size a multiple of a tile; 65 channels give a second 64-row tile
EVERY_VERSION_SHAPES = [(2, 3, 7, 9, 17), (1, 65, 5, 6, 3), (2, 1, 4, 3, 33)]


def references(x, w, b, gy):
    """(y, gx, gw) of the reference, in float64."""
    x, w, b, gy = as_float64(x, w, b, gy)
    return reference.up_conv2x2(x, w, b), reference.up_conv2x2_grad_input(gy, w), reference.up_conv2x2_grad_weight(x, gy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_up_conv2x2(backend, rng, dtype, with_bias):
    for N, Ci, H, W, Co in SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Ci, Co, 2, 2, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        gy = randn(rng, N, Co, 2 * H, 2 * W, dtype=dtype)
        y, gx, gw = (run(backend, "up_conv2x2", x, w, b), run(backend, "up_conv2x2_grad_input", gy, w),
                     run(backend, "up_conv2x2_grad_weight", x, gy))
        assert y.dtype == gx.dtype == gw.dtype == dtype
        y_ref, gx_ref, gw_ref = references(x, w, b, gy)
        assert_close_dtype(y, y_ref, dtype, name=f"y {x.shape}", scale=terms_scale(Ci))
        assert_close_dtype(gx, gx_ref, dtype, name=f"gx {x.shape}", scale=terms_scale(4 * Co))
        assert_close_dtype(gw, gw_ref, dtype, name=f"gw {x.shape}", scale=terms_scale(N * H * W))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_up_conv2x2_every_version(every_backend, rng, dtype):
    for N, Ci, H, W, Co in EVERY_VERSION_SHAPES:
        x, w, b = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Ci, Co, 2, 2, dtype=dtype), randn(rng, Co, dtype=dtype)
        gy = randn(rng, N, Co, 2 * H, 2 * W, dtype=dtype)
        where = f"{(N, Ci, H, W, Co)} {np.dtype(dtype)}"
        y_ref, gx_ref, gw_ref = references(x, w, b, gy)
        y_ref_no_bias = references(x, w, None, gy)[0]
        for v in VERSIONS["up_conv2x2_forward"]:
            for bias, ref in ((b, y_ref), (None, y_ref_no_bias)):
                assert_close_dtype(run(every_backend, "up_conv2x2", x, w, bias, version=v), ref,
                                   dtype, name=f"y v{v} {where}", scale=terms_scale(Ci))
        for v in VERSIONS["up_conv2x2_grad_input"]:
            assert_close_dtype(run(every_backend, "up_conv2x2_grad_input", gy, w, version=v), gx_ref,
                               dtype, name=f"gx v{v} {where}", scale=terms_scale(4 * Co))
        for v in VERSIONS["up_conv2x2_grad_weight"]:
            assert_close_dtype(run(every_backend, "up_conv2x2_grad_weight", x, gy, version=v), gw_ref,
                               dtype, name=f"gw v{v} {where}", scale=terms_scale(N * H * W))
