"""sgd_step: SGD with momentum (PyTorch's, dampening 0), in place; the backend op minunet.optim.SGD calls.

    g = grad + weight_decay * param;  velocity = momentum * velocity + g;  param -= lr * velocity

The numpy device's step, then the launch of kernels/sgd.cu for cuda and sim (its launcher, named as its kernel).
"""
import numpy as np

from .checks import check_real, check_same
from ..backends.registry import kernel_op, numpy_op
from .launching import KernelDefines, cdiv, check_int32_size, launcher, pick


def check_sgd(param, grad, velocity):
    check_real("param", param)
    check_same("param", param, "grad", grad)
    check_same("param", param, "velocity", velocity)


@numpy_op
def numpy_sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    check_sgd(param, grad, velocity)
    real = param.dtype.type
    g = grad + real(weight_decay) * param
    velocity *= real(momentum)
    velocity += g
    param -= real(lr) * velocity


THREADS = KernelDefines("sgd.cu").MINUNET_THREADS


@kernel_op
def kernel_sgd_step(be, param, grad, velocity, lr, momentum, weight_decay, version=None):
    check_sgd(param, grad, velocity)
    check_int32_size("sgd_step", param.shape)
    pick("sgd_step", version, param.dtype, be)(be, param, grad, velocity, lr, momentum, weight_decay)


@launcher
def sgd_step_v1(be, param, grad, velocity, lr, momentum, weight_decay):
    """One thread per parameter, in place."""
    real = param.dtype
    args = (param, grad, velocity, np.int32(param.size), be.real(real, lr), be.real(real, momentum),
            be.real(real, weight_decay))
    be.launch("sgd", "sgd_step_v1", real, (cdiv(param.size, THREADS),), (THREADS,), args)
