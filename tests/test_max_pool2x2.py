"""max_pool2x2 and max_pool2x2_grad against minunet/reference.py: the reference's ties and NaNs, the numpy
device's fast path, the kernels on the kernel devices (float32 and float64, NaN-poisoned outputs), and the
argument checks."""
import numpy as np
import pytest

from conftest import DTYPES, KERNEL_DEVICES, assert_close, on, randn
from minunet import reference
from minunet.backends import get_backend

NP = get_backend("numpy")

# windows: all equal -> 0; tie of the two bottom ones -> 2; NaN in position 1 -> NaN, 1; two NaNs -> first
TIES_AND_NANS = np.array([[5, 5, 1, 2, 0, np.nan, 1, np.nan],
                          [5, 5, 3, 3, 9, 9, np.nan, 0]], np.float64).reshape(1, 1, 2, 8)


def tie_free(rng, shape, dtype):
    """A shuffled arange (as Chainer's pooling tests): every window has a unique maximum."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0).astype(dtype)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
def test_max_pool2x2_ties_go_to_the_lowest_index_and_nan_wins(ops):
    y, arg = ops.max_pool2x2(TIES_AND_NANS)
    np.testing.assert_array_equal(arg.ravel(), [0, 2, 1, 1])
    np.testing.assert_array_equal(y.ravel(), [5, 3, np.nan, np.nan])


def test_max_pool2x2_numpy(rng):
    x = tie_free(rng, (2, 3, 6, 10), np.float64)
    y, arg = NP.max_pool2x2(x)
    y_ref, arg_ref = reference.max_pool2x2(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    assert arg.dtype == np.uint8 and y.dtype == x.dtype
    few_values = rng.integers(-1, 2, (2, 3, 6, 10)).astype(np.float32)  # ties in most windows: lowest index wins
    for got, ref in zip(NP.max_pool2x2(few_values), reference.max_pool2x2(few_values)):
        np.testing.assert_array_equal(got, ref)


def test_max_pool2x2_grad_numpy(rng):
    x = tie_free(rng, (2, 3, 6, 10), np.float64)
    y, arg = NP.max_pool2x2(x)
    gy = randn(rng, *y.shape)
    np.testing.assert_array_equal(NP.max_pool2x2_grad(gy, arg), reference.max_pool2x2_grad(gy, arg))


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
def test_max_pool2x2_grad_is_the_transpose_of_the_selection(rng, ops):
    # for a fixed argmax, pooling is a linear selection; its adjoint is max_pool2x2_grad
    y, arg = ops.max_pool2x2(randn(rng, 2, 3, 8, 8))
    x2 = randn(rng, 2, 3, 8, 8)
    gy2 = randn(rng, *y.shape)
    selected = np.take_along_axis(x2.reshape(2, 3, 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 4, 4),
                                  arg[..., None].astype(np.intp), axis=-1)[..., 0]
    assert np.vdot(selected, gy2) == pytest.approx(np.vdot(x2, ops.max_pool2x2_grad(gy2, arg)), rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda: NP.max_pool2x2(np.zeros((1, 1, 3, 4))),
    lambda: NP.max_pool2x2(np.zeros((1, 1, 4, 4), np.int32)),
])
def test_bad_arguments_raise(call):
    with pytest.raises((ValueError, TypeError)):
        call()


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_bad_arguments_raise_device(device):
    dev, (odd,) = on(device, np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="even"):
        dev.max_pool2x2(odd)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_max_pool2x2_device(device, dtype, rng):
    x = tie_free(rng, (2, 3, 14, 10), dtype)
    dev, (x_d,) = on(device, x)
    y, arg = dev.max_pool2x2(x_d)
    y_ref, arg_ref = reference.max_pool2x2(x)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_ref)
    assert_close(dev.to_numpy(y), y_ref, atol=0, rtol=0, name="max_pool2x2")
    gy = randn(rng, *y_ref.shape, dtype=dtype)
    gx = dev.max_pool2x2_grad(dev.asarray(gy), arg)
    assert_close(dev.to_numpy(gx), reference.max_pool2x2_grad(gy, arg_ref), atol=0, rtol=0, name="max_pool2x2_grad")


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_max_pool2x2_ties_and_nan_device(device):
    dev, (x_d,) = on(device, TIES_AND_NANS)
    y, arg = dev.max_pool2x2(x_d)
    y_ref, arg_ref = reference.max_pool2x2(TIES_AND_NANS)
    np.testing.assert_array_equal(dev.to_numpy(arg), arg_ref)
    np.testing.assert_array_equal(dev.to_numpy(y), y_ref)
