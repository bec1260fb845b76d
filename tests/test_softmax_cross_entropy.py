"""softmax_cross_entropy (with per-pixel weights and an ignored label) against minunet/reference.py: the
reference's gradient against finite differences of its loss, the numpy device's fast path, its stability,
the kernel devices in float32 and float64, and the argument checks."""
import numpy as np
import pytest

from conftest import DTYPES, KERNEL_DEVICES, as_float64, assert_close, assert_close_dtype, on
from minunet import reference
from minunet.backends import get_backend

NP = get_backend("numpy")


def loss_inputs(rng, shape, dtype, ignore_index):
    N, K, H, W = shape
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, K, (N, H, W)).astype(np.int32)
    if ignore_index >= 0:
        labels[rng.random((N, H, W)) < 0.3] = ignore_index
    weights = rng.uniform(0.5, 2.0, (N, H, W)).astype(dtype)
    return logits, labels, weights


@pytest.mark.parametrize("use_weights", [False, True])
@pytest.mark.parametrize("ignore_index", [-1, 255, 1])
def test_softmax_cross_entropy_numpy(rng, use_weights, ignore_index):
    logits, labels, weights = loss_inputs(rng, (2, 3, 4, 5), np.float64, ignore_index)
    weights = weights if use_weights else None
    loss, grad = NP.softmax_cross_entropy(logits, labels, weights, ignore_index, 0.25)
    loss_ref, grad_ref = reference.softmax_cross_entropy(logits, labels, weights, ignore_index, 0.25)
    assert isinstance(loss, float) and isinstance(loss_ref, float)
    assert abs(loss - loss_ref) <= 1e-12 * abs(loss_ref)
    assert_close(grad, grad_ref, atol=1e-14, rtol=1e-12)
    if ignore_index >= 0:
        assert (grad.transpose(0, 2, 3, 1)[labels == ignore_index] == 0).all()
        assert (grad_ref.transpose(0, 2, 3, 1)[labels == ignore_index] == 0).all()


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
def test_softmax_cross_entropy_is_stable(ops):
    logits = np.array([1000.0, 0.0, -1000.0], np.float32).reshape(1, 3, 1, 1)
    loss, grad = ops.softmax_cross_entropy(logits, np.array([[[1]]], np.int32), None, -1, 1.0)
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(grad.ravel(), [1, -1, 0], atol=1e-6)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
def test_softmax_cross_entropy_finite_differences(rng, ops):
    logits, labels, weights = loss_inputs(rng, (2, 4, 3, 2), np.float64, ignore_index=0)
    _, grad = ops.softmax_cross_entropy(logits, labels, weights, 0, 1.0)
    eps = 1e-6
    numeric = np.empty_like(logits)
    for idx in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (ops.softmax_cross_entropy(plus, labels, weights, 0, 1.0)[0]
                        - ops.softmax_cross_entropy(minus, labels, weights, 0, 1.0)[0]) / (2 * eps)
    assert_close(grad, numeric, atol=1e-8, rtol=1e-6, name="loss gradient")


@pytest.mark.parametrize("call", [
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2), np.int64), None, -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2), np.int32), np.ones((1, 2, 2), np.float32), -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2), -2, np.int32), None, -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2), 2, np.int32), None, -1, 1.0),
])
def test_bad_arguments_raise(call):
    with pytest.raises((ValueError, TypeError)):
        call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("use_weights,ignore_index", [(False, -1), (True, 2)])
def test_softmax_cross_entropy_device(device, dtype, use_weights, ignore_index, rng):
    # 2*23*17 = 782 pixels: 4 blocks of 256, the last one partly empty
    logits, labels, weights = loss_inputs(rng, (2, 3, 23, 17), dtype, ignore_index)
    weights = weights if use_weights else None
    dev, arrays = on(device, logits, labels, *([weights] if use_weights else []))
    loss, grad = dev.softmax_cross_entropy(arrays[0], arrays[1], arrays[2] if use_weights else None,
                                           ignore_index, 1 / 782)
    logits64, weights64 = as_float64(logits, weights)
    loss_ref, grad_ref = reference.softmax_cross_entropy(logits64, labels, weights64, ignore_index, 1 / 782)
    assert isinstance(loss, float)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert abs(loss - loss_ref) <= rtol * abs(loss_ref), (loss, loss_ref)
    assert_close_dtype(dev.to_numpy(grad), grad_ref, dtype, name="loss gradient")
