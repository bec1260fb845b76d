"""sgd_step: SGD with momentum (PyTorch's, dampening 0), in place; the backend op minunet.optim.SGD calls.

    g = grad + weight_decay * param;  velocity = momentum * velocity + g;  param -= lr * velocity

The numpy device's step, then the launch of kernels/sgd.cu for cuda and sim (its row is in launch_table.py).
"""
import numpy as np

from .checks import check_real, check_same
from .launching import launch_per_element, pick


def check_sgd(param, grad, velocity):
    check_real("param", param)
    check_same("param", param, "grad", grad)
    check_same("param", param, "velocity", velocity)


def numpy_sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    check_sgd(param, grad, velocity)
    real = param.dtype.type
    g = grad + real(weight_decay) * param
    velocity *= real(momentum)
    velocity += g
    param -= real(lr) * velocity


def kernel_sgd_step(be, param, grad, velocity, lr, momentum, weight_decay, version=None):
    check_sgd(param, grad, velocity)
    row = pick("sgd_step", "", version, param.dtype, be)
    real = param.dtype
    launch_per_element(be, row, real, param.size,
                       (param, grad, velocity, np.int32(param.size),
                        be.real(real, lr), be.real(real, momentum), be.real(real, weight_decay)))
