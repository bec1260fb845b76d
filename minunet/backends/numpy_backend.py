"""The numpy device: vectorised NumPy, the fast CPU path. Each backend op is its operator's `numpy_<op>`
function in minunet/ops/<op>.py; this class only names them (and the array helpers every backend has)."""
import ctypes

import numpy as np

from ..ops.conv1x1 import numpy_conv1x1, numpy_conv1x1_grad_input, numpy_conv1x1_grad_weight
from ..ops.conv3x3 import numpy_conv3x3, numpy_conv3x3_grad_input, numpy_conv3x3_grad_weight
from ..ops.elementwise import (numpy_bias_grad, numpy_concat, numpy_concat_grad, numpy_crop, numpy_crop_grad,
                               numpy_dropout, numpy_dropout_grad, numpy_relu, numpy_relu_grad)
from ..ops.max_pool2x2 import numpy_max_pool2x2, numpy_max_pool2x2_grad
from ..ops.sgd import numpy_sgd_step
from ..ops.softmax_cross_entropy import numpy_softmax_cross_entropy
from ..ops.up_conv2x2 import numpy_up_conv2x2, numpy_up_conv2x2_grad_input, numpy_up_conv2x2_grad_weight


class NumpyBackend:
    name = "numpy"
    xp = np

    conv3x3 = staticmethod(numpy_conv3x3)
    conv3x3_grad_input = staticmethod(numpy_conv3x3_grad_input)
    conv3x3_grad_weight = staticmethod(numpy_conv3x3_grad_weight)
    up_conv2x2 = staticmethod(numpy_up_conv2x2)
    up_conv2x2_grad_input = staticmethod(numpy_up_conv2x2_grad_input)
    up_conv2x2_grad_weight = staticmethod(numpy_up_conv2x2_grad_weight)
    conv1x1 = staticmethod(numpy_conv1x1)
    conv1x1_grad_input = staticmethod(numpy_conv1x1_grad_input)
    conv1x1_grad_weight = staticmethod(numpy_conv1x1_grad_weight)
    bias_grad = staticmethod(numpy_bias_grad)
    max_pool2x2 = staticmethod(numpy_max_pool2x2)
    max_pool2x2_grad = staticmethod(numpy_max_pool2x2_grad)
    relu = staticmethod(numpy_relu)
    relu_grad = staticmethod(numpy_relu_grad)
    crop = staticmethod(numpy_crop)
    crop_grad = staticmethod(numpy_crop_grad)
    concat = staticmethod(numpy_concat)
    concat_grad = staticmethod(numpy_concat_grad)
    dropout = staticmethod(numpy_dropout)
    dropout_grad = staticmethod(numpy_dropout_grad)
    softmax_cross_entropy = staticmethod(numpy_softmax_cross_entropy)
    sgd_step = staticmethod(numpy_sgd_step)

    def asarray(self, a):
        return np.asarray(a, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)


def keep_freed_memory():
    """Ask glibc to keep freed memory for reuse rather than give it back to the OS; False where it cannot.

    A training step allocates and frees the same large arrays every time. By default glibc maps each array
    over 128 KiB (or, once freed, over the size it last saw) fresh from the OS and unmaps it when it is
    freed, so the next step page-faults every page back in: on the default small U-Net that was 20% of a
    numpy-device step (about 150 -> 120 ms, 5 alternating runs each). The price: the process keeps its peak
    memory until it exits, a peak a training or prediction run reaches on every step anyway. So the command
    line tools call this for their own process; importing minunet changes nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, NEVER = -1, -3, 2**31 - 1  # from <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, NEVER)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER))
