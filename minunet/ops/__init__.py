"""The operators, one file per family, each holding every Python part of its op:

    conv3x3.py, conv1x1.py, up_conv2x2.py, max_pool2x2.py, softmax_cross_entropy.py, sgd.py,
    elementwise.py (relu, crop, concat, dropout, bias_grad)

Each file, in order: the argument checks, the user function (re-exported by minunet.functional) and its autograd
Function, the numpy device's fast path `@numpy_op numpy_<backend op>`, the cuda/sim backend op `@kernel_op
kernel_<backend op>(be, ...)` and one launcher per kernel version, named as its kernel (`@launcher
conv3x3_forward_v3`). launching.py holds what the launchers share. Importing this package imports every op
file, so every backend op is registered with its device (minunet/backends/registry.py) before any is called.
"""
from . import conv1x1, conv3x3, elementwise, max_pool2x2, sgd, softmax_cross_entropy, up_conv2x2  # noqa: F401
