"""The elementwise ops of kernels/elementwise.cu against minunet/reference.py: relu, crop, concat, dropout
(its counter hash bit for bit) and bias_grad. The numpy device's fast path, then every kernel device (sim;
cuda on a GPU) in float32 and float64 with NaN-poisoned outputs, and the argument checks."""
import numpy as np
import pytest

from conftest import DTYPES, KERNEL_DEVICES, as_float64, assert_close, assert_close_dtype, on, randn
from minunet import reference
from minunet.backends import get_backend
from minunet.ops.elementwise import hash32, hash_uniform

NP = get_backend("numpy")


# ---------------------------------------------------------------------------------------------------------------
# the numpy device against the reference

def test_bias_grad_numpy(rng):
    gy = randn(rng, 2, 3, 5, 7)
    assert_close(NP.bias_grad(gy), reference.bias_grad(gy), atol=1e-12, rtol=1e-12)


def test_relu_numpy(rng):
    x = randn(rng, 2, 3, 4, 5, dtype=np.float32)
    y = NP.relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, reference.relu(x))
    gy = randn(rng, *x.shape, dtype=np.float32)
    np.testing.assert_array_equal(NP.relu_grad(gy, y), reference.relu_grad(gy, reference.relu(x)))


def test_relu_keeps_nan_and_the_sign_of_zero():
    x = np.array([-1.0, -0.0, 0.0, np.nan, 2.0], np.float32)
    assert NP.relu(x).tobytes() == reference.relu(x).tobytes()
    np.testing.assert_array_equal(reference.relu(x), [0, 0, 0, np.nan, 2])


def test_crop_and_concat_numpy(rng):
    x = randn(rng, 2, 3, 9, 11)
    y = NP.crop(x, 2, 3, 5, 6)
    np.testing.assert_array_equal(y, reference.crop(x, 2, 3, 5, 6))
    np.testing.assert_array_equal(NP.crop_grad(y, x.shape, 2, 3), reference.crop_grad(y, x.shape, 2, 3))
    np.testing.assert_array_equal(reference.crop_grad(y, x.shape, 2, 3), np.pad(y, [(0, 0), (0, 0), (2, 2), (3, 2)]))
    a, b = randn(rng, 2, 3, 4, 5), randn(rng, 2, 1, 4, 5)
    ab = NP.concat(a, b)
    assert ab.shape == (2, 4, 4, 5)
    np.testing.assert_array_equal(ab[:, :3], a)
    np.testing.assert_array_equal(ab[:, 3], b[:, 0])
    np.testing.assert_array_equal(ab, reference.concat(a, b))
    ga, gb = NP.concat_grad(ab, 3)
    np.testing.assert_array_equal(ga, a)
    np.testing.assert_array_equal(gb, b)
    for got, ref in zip((ga, gb), reference.concat_grad(ab, 3)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
def test_crop_and_concat_grads_are_the_transposes(rng, ops):
    x, gy = randn(rng, 2, 3, 9, 8), randn(rng, 2, 3, 4, 5)
    assert np.vdot(ops.crop(x, 3, 2, 4, 5), gy) == pytest.approx(np.vdot(x, ops.crop_grad(gy, x.shape, 3, 2)),
                                                                 rel=1e-12)
    a, b, g = randn(rng, 2, 3, 4, 5), randn(rng, 2, 2, 4, 5), randn(rng, 2, 5, 4, 5)
    ga, gb = ops.concat_grad(g, 3)
    assert np.vdot(ops.concat(a, b), g) == pytest.approx(np.vdot(a, ga) + np.vdot(b, gb), rel=1e-12)


def test_hash_matches_lowbias32():
    # numpy's vectorised hash (uint32 arrays) against the reference's, written in Python ints
    for v in [0, 1, 2, 12345, 0x7FFFFFFF, 0xDEADBEEF, 0xFFFFFFFF]:
        assert int(hash32(v)[0]) == reference.lowbias32(v), v
    values = np.array([3, 77, 4096, 2**31 + 5], np.uint32)
    np.testing.assert_array_equal(hash32(values), [reference.lowbias32(int(v)) for v in values])
    for seed, index in [(0, 0), (1, 0), (42, 7), (2**32 - 1, 123456)]:
        expected = (reference.lowbias32(index ^ reference.lowbias32(seed)) >> 8) / 2**24
        assert float(hash_uniform(seed, index)[0]) == expected == reference.hash_uniform(seed, index)


def test_dropout_numpy(rng):
    x = randn(rng, 4, 8, 32, 33, dtype=np.float32)
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
    y_ref, mask_ref = reference.dropout(x, p, seed=7)
    assert mask.tobytes() == mask_ref.tobytes() and y.tobytes() == y_ref.tobytes()


@pytest.mark.parametrize("call", [
    lambda: NP.crop(np.zeros((1, 1, 4, 4)), 1, 0, 4, 4),
    lambda: NP.concat(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5))),
    lambda: NP.concat(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4), np.float32)),
    lambda: NP.concat_grad(np.zeros((1, 3, 4, 4)), 3),
    lambda: NP.dropout(np.zeros(4), 1.0, 0),
    lambda: NP.dropout(np.zeros(4), 0.5, -1),
    lambda: NP.dropout(np.zeros(4), 0.5, 0, 2**32 - 2),  # offset + index past 32 bits
    lambda: NP.dropout(np.zeros(4), 0.5, 0, -1),
])
def test_bad_arguments_raise(call):
    with pytest.raises((ValueError, TypeError)):
        call()


# ---------------------------------------------------------------------------------------------------------------
# kernel devices against the reference

@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_bad_arguments_raise_device(device):
    dev, (x,) = on(device, np.zeros((1, 2, 4, 4), np.float32))
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_bias_grad_device(device, dtype, rng):
    gy = randn(rng, 2, 17, 14, 9, dtype=dtype)
    dev, (gy_d,) = on(device, gy)
    assert_close_dtype(dev.to_numpy(dev.bias_grad(gy_d)), reference.bias_grad(*as_float64(gy)), dtype,
                       name="bias_grad", scale=20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_relu_device(device, dtype, rng):
    x = randn(rng, 2, 3, 6, 11, dtype=dtype)
    gy = randn(rng, *x.shape, dtype=dtype)
    dev, (x_d, gy_d) = on(device, x, gy)
    y = dev.relu(x_d)
    assert_close(dev.to_numpy(y), reference.relu(x), atol=0, rtol=0, name="relu")
    assert_close(dev.to_numpy(dev.relu_grad(gy_d, y)), reference.relu_grad(gy, reference.relu(x)), atol=0, rtol=0,
                 name="relu_grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_crop_and_concat_device(device, dtype, rng):
    x = randn(rng, 2, 3, 14, 9, dtype=dtype)
    a, b = randn(rng, 2, 17, 6, 5, dtype=dtype), randn(rng, 2, 3, 6, 5, dtype=dtype)
    dev, (x_d, a_d, b_d) = on(device, x, a, b)
    y = dev.crop(x_d, 3, 1, 7, 6)
    assert_close(dev.to_numpy(y), reference.crop(x, 3, 1, 7, 6), atol=0, rtol=0, name="crop")
    gx = dev.crop_grad(y, x.shape, 3, 1)
    assert_close(dev.to_numpy(gx), reference.crop_grad(reference.crop(x, 3, 1, 7, 6), x.shape, 3, 1), atol=0, rtol=0,
                 name="crop_grad")
    ab = dev.concat(a_d, b_d)
    assert_close(dev.to_numpy(ab), reference.concat(a, b), atol=0, rtol=0, name="concat")
    ga, gb = dev.concat_grad(ab, 17)
    assert_close(dev.to_numpy(ga), a, atol=0, rtol=0, name="concat_grad a")
    assert_close(dev.to_numpy(gb), b, atol=0, rtol=0, name="concat_grad b")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_dropout_device(device, dtype, rng):
    x = randn(rng, 2, 3, 14, 10, dtype=dtype)
    gy = randn(rng, *x.shape, dtype=dtype)
    dev, (x_d, gy_d) = on(device, x, gy)
    for p, seed, offset in [(0.5, 3, 0), (0.1, 2**32 - 1, 0), (0.0, 0, 0), (0.5, 3, 2**31 + 11)]:
        y, mask = dev.dropout(x_d, p, seed, offset)
        y_ref, mask_ref = reference.dropout(x, p, seed, offset)
        mask = dev.to_numpy(mask)
        assert mask.dtype == dtype
        assert mask.tobytes() == mask_ref.tobytes(), f"dropout mask differs from the reference (p={p}, seed={seed}, offset={offset})"
        assert_close(dev.to_numpy(y), y_ref, atol=0, rtol=0, name="dropout")
    assert_close(dev.to_numpy(dev.dropout_grad(gy_d, dev.asarray(mask_ref))), reference.dropout_grad(gy, mask_ref),
                 atol=0, rtol=0, name="dropout_grad")
