"""conv1x1 (the U-Net's last layer), forward and backward, against minunet/reference.py.

1. The reference itself: a 3x3 convolution whose kernel is zero but at its centre, and its gradients as the
   exact transposes of its forward.
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


def test_reference_conv1x1_is_a_conv3x3_with_only_the_centre_tap(rng):
    x, w, b = randn(rng, 2, 3, 4, 5), randn(rng, 2, 3, 1, 1), randn(rng, 2)
    w3 = np.zeros((2, 3, 3, 3))
    w3[:, :, 1, 1] = w[:, :, 0, 0]
    assert_close(reference.conv1x1(x, w, b), reference.conv3x3(x, w3, b, 1), **EXACT)


@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_conv1x1_matches_the_reference(rng, with_bias):
    x, w, gy = randn(rng, 2, 3, 4, 5), randn(rng, 2, 3, 1, 1), randn(rng, 2, 2, 4, 5)
    b = randn(rng, 2) if with_bias else None
    assert_close(NP.conv1x1(x, w, b), reference.conv1x1(x, w, b), **EXACT, name="y")
    assert_close(NP.conv1x1_grad_input(gy, w), reference.conv1x1_grad_input(gy, w), **EXACT, name="gx")
    assert_close(NP.conv1x1_grad_weight(x, gy), reference.conv1x1_grad_weight(x, gy), **EXACT, name="gw")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_conv1x1_keeps_the_dtype(rng, dtype):
    x, w, b, gy = (randn(rng, *s, dtype=dtype) for s in [(1, 2, 5, 5), (3, 2, 1, 1), (3,), (1, 3, 5, 5)])
    outs = {"conv1x1": NP.conv1x1(x, w, b), "conv1x1_grad_input": NP.conv1x1_grad_input(gy, w),
            "conv1x1_grad_weight": NP.conv1x1_grad_weight(x, gy)}
    assert_outputs_keep(dtype, outs)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 4, 3)])
def test_conv1x1_backward_is_the_transpose(rng, ops, shape):
    N, Ci, H, W = shape
    Co = 2
    x, w, gy = randn(rng, *shape), randn(rng, Co, Ci, 1, 1), randn(rng, N, Co, H, W)
    y_dot_gy = np.vdot(ops.conv1x1(x, w, None), gy)
    assert_adjoint(y_dot_gy, np.vdot(x, ops.conv1x1_grad_input(gy, w)), "grad_input")
    assert_adjoint(y_dot_gy, np.vdot(w, ops.conv1x1_grad_weight(x, gy)), "grad_weight")


# ---------------------------------------------------------------- kernels against the reference

# (N, Ci, H, W, Co)
SHAPES = [(2, 3, 7, 9, 2), (1, 17, 4, 3, 5), (2, 1, 5, 6, 3)]
# no size a multiple of a tile; 65 channels give a second 64-row tile; the U-Net's last layer: 64 -> 2 classes
EVERY_VERSION_SHAPES = [(2, 3, 7, 9, 17), (1, 65, 5, 6, 3), (2, 1, 4, 3, 33), (1, 64, 7, 5, 2)]


def references(x, w, b, gy):
    """(y, gx, gw) of the reference, in float64."""
    x, w, b, gy = as_float64(x, w, b, gy)
    return reference.conv1x1(x, w, b), reference.conv1x1_grad_input(gy, w), reference.conv1x1_grad_weight(x, gy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_conv1x1(backend, rng, dtype, with_bias):
    for N, Ci, H, W, Co in SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 1, 1, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        gy = randn(rng, N, Co, H, W, dtype=dtype)
        y, gx, gw = (run(backend, "conv1x1", x, w, b), run(backend, "conv1x1_grad_input", gy, w),
                     run(backend, "conv1x1_grad_weight", x, gy))
        assert y.dtype == gx.dtype == gw.dtype == dtype
        y_ref, gx_ref, gw_ref = references(x, w, b, gy)
        assert_close_dtype(y, y_ref, dtype, name=f"y {x.shape}", scale=terms_scale(Ci))
        assert_close_dtype(gx, gx_ref, dtype, name=f"gx {x.shape}", scale=terms_scale(Co))
        assert_close_dtype(gw, gw_ref, dtype, name=f"gw {x.shape}", scale=terms_scale(N * H * W))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv1x1_every_version(every_backend, rng, dtype):
    for N, Ci, H, W, Co in EVERY_VERSION_SHAPES:
        x, w, b = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 1, 1, dtype=dtype), randn(rng, Co, dtype=dtype)
        gy = randn(rng, N, Co, H, W, dtype=dtype)
        where = f"{(N, Ci, H, W, Co)} {np.dtype(dtype)}"
        y_ref, gx_ref, gw_ref = references(x, w, b, gy)
        y_ref_no_bias = references(x, w, None, gy)[0]
        for v in VERSIONS["conv1x1_forward"]:
            for bias, ref in ((b, y_ref), (None, y_ref_no_bias)):
                assert_close_dtype(run(every_backend, "conv1x1", x, w, bias, version=v), ref,
                                   dtype, name=f"y v{v} {where}", scale=terms_scale(Ci))
        for v in VERSIONS["conv1x1_grad_input"]:
            assert_close_dtype(run(every_backend, "conv1x1_grad_input", gy, w, version=v), gx_ref,
                               dtype, name=f"gx v{v} {where}", scale=terms_scale(Co))
        for v in VERSIONS["conv1x1_grad_weight"]:
            assert_close_dtype(run(every_backend, "conv1x1_grad_weight", x, gy, version=v), gw_ref,
                               dtype, name=f"gw v{v} {where}", scale=terms_scale(N * H * W))
