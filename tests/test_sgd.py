"""sgd_step (PyTorch's SGD with momentum and weight decay, in place) against minunet/reference.py: the numpy
device's fast path and the kernel devices, several steps in float32 and float64, and the argument checks."""
import numpy as np
import pytest

from conftest import DTYPES, KERNEL_DEVICES, assert_close, assert_close_dtype, on, randn
from minunet import reference
from minunet.backends import get_backend

NP = get_backend("numpy")


def test_sgd_step_numpy(rng):
    param = randn(rng, 3, 5)
    p, v = param.copy(), np.zeros_like(param)
    vel = np.zeros_like(param)
    lr, mom, wd = 0.1, 0.9, 1e-3
    for _ in range(3):
        grad = randn(rng, *param.shape)
        NP.sgd_step(param, grad, vel, lr, mom, wd)
        reference.sgd_step(p, grad, v, lr, mom, wd)
    assert_close(param, p, atol=1e-15, rtol=1e-14)
    assert_close(vel, v, atol=1e-15, rtol=1e-14)


def test_reference_sgd_step_is_pytorchs_update():
    # one step by hand: g = 1 + 0.5*2 = 2; v = 0.9*1 + 2 = 2.9; p = 2 - 0.1*2.9 = 1.71
    p, v = np.array([2.0]), np.array([1.0])
    reference.sgd_step(p, np.array([1.0]), v, 0.1, 0.9, 0.5)
    assert v[0] == pytest.approx(2.9, rel=1e-15) and p[0] == pytest.approx(1.71, rel=1e-15)


def test_bad_arguments_raise():
    with pytest.raises((ValueError, TypeError)):
        NP.sgd_step(np.zeros(3), np.zeros(4), np.zeros(3), 0.1, 0.9, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_sgd_step_device(device, dtype, rng):
    shape = (17, 3, 3, 3)
    param, vel = randn(rng, *shape, dtype=dtype), np.zeros(shape, dtype)
    dev, (param_d, vel_d) = on(device, param, vel)
    param, vel = param.astype(np.float64), vel.astype(np.float64)
    for _ in range(4):
        grad = randn(rng, *shape, dtype=dtype)
        dev.sgd_step(param_d, dev.asarray(grad), vel_d, 0.05, 0.99, 1e-4)
        reference.sgd_step(param, grad.astype(np.float64), vel, 0.05, 0.99, 1e-4)
    assert_close_dtype(dev.to_numpy(param_d), param, dtype, name="param")
    assert_close_dtype(dev.to_numpy(vel_d), vel, dtype, name="velocity")
