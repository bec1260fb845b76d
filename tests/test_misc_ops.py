"""The non-convolution ops: pooling, relu, crop/concat, dropout, the loss, SGD.

1. the numpy reference against independent references written here (loops, plain formulas);
2. numpy adjoint (dot-product) tests and the loss gradient against finite differences;
3. every kernel device (sim; cuda on a GPU) against numpy, in float32 and float64, with NaN-poisoned outputs.
"""
import math

import numpy as np
import pytest

from conftest import DTYPES, KERNEL_DEVICES, assert_close, assert_close_dtype
from minunet.backends import get_backend
from minunet.backends.kernel_misc import DEFAULT_VERSIONS
from minunet.backends.numpy_misc import hash32, hash_uniform
from minunet.paths import kernel_path

NP = get_backend("numpy")


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def tie_free(rng, shape, dtype):
    """A shuffled arange (as Chainer's pooling tests): every window has a unique maximum."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0).astype(dtype)


def lowbias32(x):
    """The hash of kernels/common.cuh in pure Python ints."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


# ---------------------------------------------------------------------------------------------------------------
# 1. numpy against independent references

def test_bias_grad_numpy(rng):
    gy = randn(rng, (2, 3, 5, 7), np.float64)
    ref = [sum(gy[n, c, i, j] for n in range(2) for i in range(5) for j in range(7)) for c in range(3)]
    assert_close(NP.bias_grad(gy), np.array(ref), atol=1e-12, rtol=1e-12)


def pool_reference(x):
    N, C, H, W = x.shape
    y = np.empty((N, C, H // 2, W // 2), x.dtype)
    arg = np.empty(y.shape, np.uint8)
    for n, c, i, j in np.ndindex(*y.shape):
        window = [x[n, c, 2 * i + dy, 2 * j + dx] for dy in (0, 1) for dx in (0, 1)]
        k = max(range(4), key=lambda k: (window[k], -k))  # the largest; the lowest index among equals
        y[n, c, i, j], arg[n, c, i, j] = window[k], k
    return y, arg


def test_max_pool2x2_numpy(rng):
    x = tie_free(rng, (2, 3, 6, 10), np.float64)
    y, arg = NP.max_pool2x2(x)
    y_ref, arg_ref = pool_reference(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == np.uint8 and y.dtype == x.dtype
    few_values = rng.integers(-1, 2, (2, 3, 6, 10)).astype(np.float32)  # ties in most windows: lowest index wins
    for got, ref in zip(NP.max_pool2x2(few_values), pool_reference(few_values)):
        np.testing.assert_array_equal(got, ref)


def test_max_pool2x2_grad_numpy(rng):
    x = tie_free(rng, (2, 3, 6, 10), np.float64)
    y, arg = NP.max_pool2x2(x)
    gy = randn(rng, y.shape, np.float64)
    gx_ref = np.zeros_like(x)
    for n, c, i, j in np.ndindex(*y.shape):
        k = int(arg[n, c, i, j])
        gx_ref[n, c, 2 * i + k // 2, 2 * j + k % 2] = gy[n, c, i, j]
    np.testing.assert_array_equal(NP.max_pool2x2_grad(gy, arg), gx_ref)


def test_relu_numpy(rng):
    x = randn(rng, (2, 3, 4, 5), np.float32)
    y = NP.relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([max(float(v), 0.0) for v in x.ravel()]).reshape(x.shape))
    gy = randn(rng, x.shape, np.float32)
    np.testing.assert_array_equal(NP.relu_grad(gy, y), gy * (x > 0))


def test_crop_and_concat_numpy(rng):
    x = randn(rng, (2, 3, 9, 11), np.float64)
    y = NP.crop(x, 2, 3, 5, 6)
    np.testing.assert_array_equal(y, [[[[x[n, c, 2 + i, 3 + j] for j in range(6)] for i in range(5)]
                                       for c in range(3)] for n in range(2)])
    np.testing.assert_array_equal(NP.crop_grad(y, x.shape, 2, 3), np.pad(y, [(0, 0), (0, 0), (2, 2), (3, 2)]))
    a, b = randn(rng, (2, 3, 4, 5), np.float64), randn(rng, (2, 1, 4, 5), np.float64)
    ab = NP.concat(a, b)
    assert ab.shape == (2, 4, 4, 5)
    np.testing.assert_array_equal(ab[:, :3], a)
    np.testing.assert_array_equal(ab[:, 3], b[:, 0])
    ga, gb = NP.concat_grad(ab, 3)
    np.testing.assert_array_equal(ga, a)
    np.testing.assert_array_equal(gb, b)


def test_hash_matches_lowbias32():
    for v in [0, 1, 2, 12345, 0x7FFFFFFF, 0xDEADBEEF, 0xFFFFFFFF]:
        assert int(hash32(v)[0]) == lowbias32(v), v
    values = np.array([3, 77, 4096, 2**31 + 5], np.uint32)
    np.testing.assert_array_equal(hash32(values), [lowbias32(int(v)) for v in values])
    for seed, index in [(0, 0), (1, 0), (42, 7), (2**32 - 1, 123456)]:
        expected = (lowbias32(index ^ lowbias32(seed)) >> 8) / 2**24
        assert float(hash_uniform(seed, index)[0]) == expected


def test_dropout_numpy(rng):
    x = randn(rng, (4, 8, 32, 33), np.float32)
    p = 0.3
    y, mask = NP.dropout(x, p, seed=7)
    assert mask.dtype == np.float32 and y.dtype == np.float32
    scale = np.float32(1 / (1 - p))
    assert set(np.unique(mask).tolist()) == {0.0, float(scale)}
    keep = (mask != 0).mean()
    assert abs(keep - (1 - p)) < 0.01, keep  # 33792 draws: standard deviation 0.0025
    np.testing.assert_array_equal(y, x * mask)
    np.testing.assert_array_equal(NP.dropout(x, p, seed=7)[1], mask)
    assert (NP.dropout(x, p, seed=8)[1] != mask).mean() > 0.3
    np.testing.assert_array_equal(NP.dropout_grad(x, mask), x * mask)
    np.testing.assert_array_equal(NP.dropout(x, 0.0, seed=7)[0], x)
    # offset: samples 1.. of the batch on their own (a data-parallel process's share) get the batch's mask
    np.testing.assert_array_equal(NP.dropout(x[1:], p, seed=7, offset=x[0].size)[1], mask[1:])


def loss_reference(logits, labels, weights, ignore_index, scale):
    """One pixel at a time with math.exp / math.log."""
    N, K, H, W = logits.shape
    total, grad = 0.0, np.zeros(logits.shape)
    for n, i, j in np.ndindex(N, H, W):
        label = int(labels[n, i, j])
        if label == ignore_index:
            continue
        z = [float(logits[n, k, i, j]) for k in range(K)]
        e = [math.exp(v) for v in z]
        wt = 1.0 if weights is None else float(weights[n, i, j])
        total += -wt * math.log(e[label] / sum(e))
        for k in range(K):
            grad[n, k, i, j] = scale * wt * (e[k] / sum(e) - (k == label))
    return total, grad


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
    loss_ref, grad_ref = loss_reference(logits, labels, weights, ignore_index, 0.25)
    assert isinstance(loss, float)
    assert abs(loss - loss_ref) <= 1e-12 * abs(loss_ref)
    assert_close(grad, grad_ref, atol=1e-14, rtol=1e-12)
    if ignore_index >= 0:
        assert (grad.transpose(0, 2, 3, 1)[labels == ignore_index] == 0).all()


def test_softmax_cross_entropy_is_stable():
    logits = np.array([1000.0, 0.0, -1000.0], np.float32).reshape(1, 3, 1, 1)
    loss, grad = NP.softmax_cross_entropy(logits, np.array([[[1]]], np.int32), None, -1, 1.0)
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(grad.ravel(), [1, -1, 0], atol=1e-6)


def test_sgd_step_numpy(rng):
    param = randn(rng, (3, 5), np.float64)
    p, v = param.copy(), np.zeros_like(param)
    vel = np.zeros_like(param)
    lr, mom, wd = 0.1, 0.9, 1e-3
    for _ in range(3):
        grad = randn(rng, param.shape, np.float64)
        NP.sgd_step(param, grad, vel, lr, mom, wd)
        for idx in np.ndindex(*p.shape):  # PyTorch's update, one element at a time
            g = grad[idx] + wd * p[idx]
            v[idx] = mom * v[idx] + g
            p[idx] -= lr * v[idx]
    assert_close(param, p, atol=1e-15, rtol=1e-14)
    assert_close(vel, v, atol=1e-15, rtol=1e-14)


@pytest.mark.parametrize("call", [
    lambda: NP.max_pool2x2(np.zeros((1, 1, 3, 4))),
    lambda: NP.max_pool2x2(np.zeros((1, 1, 4, 4), np.int32)),
    lambda: NP.crop(np.zeros((1, 1, 4, 4)), 1, 0, 4, 4),
    lambda: NP.concat(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5))),
    lambda: NP.concat(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4), np.float32)),
    lambda: NP.concat_grad(np.zeros((1, 3, 4, 4)), 3),
    lambda: NP.dropout(np.zeros(4), 1.0, 0),
    lambda: NP.dropout(np.zeros(4), 0.5, -1),
    lambda: NP.dropout(np.zeros(4), 0.5, 0, 2**32 - 2),  # offset + index past 32 bits
    lambda: NP.dropout(np.zeros(4), 0.5, 0, -1),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2), np.int64), None, -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2), np.int32), np.ones((1, 2, 2), np.float32), -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2), -2, np.int32), None, -1, 1.0),
    lambda: NP.softmax_cross_entropy(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2), 2, np.int32), None, -1, 1.0),
    lambda: NP.sgd_step(np.zeros(3), np.zeros(4), np.zeros(3), 0.1, 0.9, 0.0),
])
def test_bad_arguments_raise(call):
    with pytest.raises((ValueError, TypeError)):
        call()


# ---------------------------------------------------------------------------------------------------------------
# 2. adjoints and finite differences (numpy, float64)

def test_adjoints_numpy(rng):
    def dot(a, b):
        return float(np.sum(a * b))

    x = randn(rng, (2, 3, 9, 8), np.float64)
    gy = randn(rng, (2, 3, 4, 5), np.float64)
    assert dot(NP.crop(x, 3, 2, 4, 5), gy) == pytest.approx(dot(x, NP.crop_grad(gy, x.shape, 3, 2)), rel=1e-12)

    a, b = randn(rng, (2, 3, 4, 5), np.float64), randn(rng, (2, 2, 4, 5), np.float64)
    g = randn(rng, (2, 5, 4, 5), np.float64)
    ga, gb = NP.concat_grad(g, 3)
    assert dot(NP.concat(a, b), g) == pytest.approx(dot(a, ga) + dot(b, gb), rel=1e-12)

    # for a fixed argmax, pooling is a linear selection; its adjoint is max_pool2x2_grad
    y, arg = NP.max_pool2x2(x[:, :, :8])
    x2 = randn(rng, (2, 3, 8, 8), np.float64)
    gy2 = randn(rng, y.shape, np.float64)
    selected = np.take_along_axis(x2.reshape(2, 3, 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 4, 4),
                                  arg[..., None].astype(np.intp), axis=-1)[..., 0]
    assert dot(selected, gy2) == pytest.approx(dot(x2, NP.max_pool2x2_grad(gy2, arg)), rel=1e-12)


def test_softmax_cross_entropy_finite_differences(rng):
    logits, labels, weights = loss_inputs(rng, (2, 4, 3, 2), np.float64, ignore_index=0)
    _, grad = NP.softmax_cross_entropy(logits, labels, weights, 0, 1.0)
    eps = 1e-6
    numeric = np.empty_like(logits)
    for idx in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (NP.softmax_cross_entropy(plus, labels, weights, 0, 1.0)[0]
                        - NP.softmax_cross_entropy(minus, labels, weights, 0, 1.0)[0]) / (2 * eps)
    assert_close(grad, numeric, atol=1e-8, rtol=1e-6, name="loss gradient")


# ---------------------------------------------------------------------------------------------------------------
# 3. kernel devices against numpy

def test_default_kernel_versions_exist():
    source = "".join(kernel_path(stem).read_text() for stem in ("max_pool2x2", "elementwise",
                                                               "softmax_cross_entropy", "sgd"))
    for op, version in DEFAULT_VERSIONS.items():
        assert f'extern "C" __global__ void {op}_v{version}(' in source, op


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_bad_arguments_raise_device(device):
    dev, (x, odd) = on(device, np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="even"):
        dev.max_pool2x2(odd)
    with pytest.raises(ValueError, match="does not fit"):
        dev.crop(x, 1, 1, 4, 2)
    with pytest.raises(ValueError, match="p must be"):
        dev.dropout(x, 1.5, 0)
    with pytest.raises(ValueError, match="relu_forward_v99"):
        dev.relu(x, version=99)
    # Scalars must have the kernel parameter's exact C type: CuPy passes a numpy scalar by its own size.
    for n in (16, np.int64(16), np.bool_(True)):
        with pytest.raises(TypeError, match=f"argument 2 is a .*{type(n).__name__}.*pass np.int32"):
            dev.launch("elementwise", "fill_v1", np.float32, (1,), (32,), (x, np.float32(0), n))


def on(device, *arrays):
    backend = get_backend(device)
    return backend, [backend.asarray(a) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_bias_grad_device(device, dtype, rng):
    gy = randn(rng, (2, 17, 14, 9), dtype)
    dev, (gy_d,) = on(device, gy)
    assert_close_dtype(dev.to_numpy(dev.bias_grad(gy_d)), NP.bias_grad(gy.astype(np.float64)), dtype,
                       name="bias_grad", scale=20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_max_pool2x2_device(device, dtype, rng):
    x = tie_free(rng, (2, 3, 14, 10), dtype)
    dev, (x_d,) = on(device, x)
    y, arg = dev.max_pool2x2(x_d)
    y_ref, arg_ref = NP.max_pool2x2(x)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_ref)
    assert_close(dev.to_numpy(y), y_ref, atol=0, rtol=0, name="max_pool2x2")
    gy = randn(rng, y_ref.shape, dtype)
    gx = dev.max_pool2x2_grad(dev.asarray(gy), arg)
    assert_close(dev.to_numpy(gx), NP.max_pool2x2_grad(gy, arg_ref), atol=0, rtol=0, name="max_pool2x2_grad")


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_max_pool2x2_ties_and_nan_device(device):
    nan = np.nan
    # windows: all equal -> 0; tie of the two bottom ones -> 2; NaN in position 1 -> NaN, 1; two NaNs -> first
    x = np.array([[5, 5, 1, 2, 0, nan, 1, nan],
                  [5, 5, 3, 3, 9, 9, nan, 0]], np.float64).reshape(1, 1, 2, 8)
    y_ref, arg_ref = NP.max_pool2x2(x)
    np.testing.assert_array_equal(arg_ref.ravel(), [0, 2, 1, 1])
    np.testing.assert_array_equal(y_ref.ravel(), [5, 3, nan, nan])
    dev, (x_d,) = on(device, x)
    y, arg = dev.max_pool2x2(x_d)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_ref)
    np.testing.assert_array_equal(dev.to_numpy(y), y_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_relu_device(device, dtype, rng):
    x = randn(rng, (2, 3, 6, 11), dtype)
    gy = randn(rng, x.shape, dtype)
    dev, (x_d, gy_d) = on(device, x, gy)
    y = dev.relu(x_d)
    assert_close(dev.to_numpy(y), NP.relu(x), atol=0, rtol=0, name="relu")
    assert_close(dev.to_numpy(dev.relu_grad(gy_d, y)), NP.relu_grad(gy, NP.relu(x)), atol=0, rtol=0, name="relu_grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_crop_and_concat_device(device, dtype, rng):
    x = randn(rng, (2, 3, 14, 9), dtype)
    a, b = randn(rng, (2, 17, 6, 5), dtype), randn(rng, (2, 3, 6, 5), dtype)
    dev, (x_d, a_d, b_d) = on(device, x, a, b)
    y = dev.crop(x_d, 3, 1, 7, 6)
    assert_close(dev.to_numpy(y), NP.crop(x, 3, 1, 7, 6), atol=0, rtol=0, name="crop")
    gx = dev.crop_grad(y, x.shape, 3, 1)
    assert_close(dev.to_numpy(gx), NP.crop_grad(NP.crop(x, 3, 1, 7, 6), x.shape, 3, 1), atol=0, rtol=0,
                 name="crop_grad")
    ab = dev.concat(a_d, b_d)
    assert_close(dev.to_numpy(ab), NP.concat(a, b), atol=0, rtol=0, name="concat")
    ga, gb = dev.concat_grad(ab, 17)
    assert_close(dev.to_numpy(ga), a, atol=0, rtol=0, name="concat_grad a")
    assert_close(dev.to_numpy(gb), b, atol=0, rtol=0, name="concat_grad b")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_dropout_device(device, dtype, rng):
    x = randn(rng, (2, 3, 14, 10), dtype)
    gy = randn(rng, x.shape, dtype)
    dev, (x_d, gy_d) = on(device, x, gy)
    for p, seed, offset in [(0.5, 3, 0), (0.1, 2**32 - 1, 0), (0.0, 0, 0), (0.5, 3, 2**31 + 11)]:
        y, mask = dev.dropout(x_d, p, seed, offset)
        y_ref, mask_ref = NP.dropout(x, p, seed, offset)
        mask = dev.to_numpy(mask)
        assert mask.dtype == dtype
        assert mask.tobytes() == mask_ref.tobytes(), f"dropout mask differs from numpy (p={p}, seed={seed}, offset={offset})"
        assert_close(dev.to_numpy(y), y_ref, atol=0, rtol=0, name="dropout")
    assert_close(dev.to_numpy(dev.dropout_grad(gy_d, dev.asarray(mask_ref))), NP.dropout_grad(gy, mask_ref),
                 atol=0, rtol=0, name="dropout_grad")


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
    loss_ref, grad_ref = NP.softmax_cross_entropy(logits, labels, weights, ignore_index, 1 / 782)
    assert isinstance(loss, float)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert abs(loss - loss_ref) <= rtol * abs(loss_ref), (loss, loss_ref)
    assert_close_dtype(dev.to_numpy(grad), grad_ref, dtype, name="loss gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_sgd_step_device(device, dtype, rng):
    shape = (17, 3, 3, 3)
    param, vel = randn(rng, shape, dtype), np.zeros(shape, dtype)
    dev, (param_d, vel_d) = on(device, param, vel)
    for _ in range(4):
        grad = randn(rng, shape, dtype)
        dev.sgd_step(param_d, dev.asarray(grad), vel_d, 0.05, 0.99, 1e-4)
        NP.sgd_step(param, grad, vel, 0.05, 0.99, 1e-4)
    assert_close_dtype(dev.to_numpy(param_d), param, dtype, name="param")
    assert_close_dtype(dev.to_numpy(vel_d), vel, dtype, name="velocity")
