"""The cuda and sim devices: both launch the same kernels/*.cu through a launcher.

Each backend op is its operator's `kernel_<op>(be, ...)` function in minunet/ops/<op>.py, which sizes the
launch from its row of minunet/ops/launch_table.py; this class names them and does the launch. The launch code
is shared, so every CPU test of the simulator also exercises the launch configuration that runs on the GPU.
"""
import numpy as np

from ..ops.conv1x1 import kernel_conv1x1, kernel_conv1x1_grad_input, kernel_conv1x1_grad_weight
from ..ops.conv3x3 import kernel_conv3x3, kernel_conv3x3_grad_input, kernel_conv3x3_grad_weight
from ..ops.elementwise import (kernel_bias_grad, kernel_concat, kernel_concat_grad, kernel_crop, kernel_crop_grad,
                               kernel_dropout, kernel_dropout_grad, kernel_relu, kernel_relu_grad)
from ..ops.max_pool2x2 import kernel_max_pool2x2, kernel_max_pool2x2_grad
from ..ops.sgd import kernel_sgd_step
from ..ops.softmax_cross_entropy import kernel_softmax_cross_entropy
from ..ops.up_conv2x2 import kernel_up_conv2x2, kernel_up_conv2x2_grad_input, kernel_up_conv2x2_grad_weight

_SCALAR_TYPES = (np.int32, np.uint32, np.float32, np.float64)


class KernelBackend:
    # the backend ops: functions of (backend, ...), so each becomes a method here
    conv3x3 = kernel_conv3x3
    conv3x3_grad_input = kernel_conv3x3_grad_input
    conv3x3_grad_weight = kernel_conv3x3_grad_weight
    up_conv2x2 = kernel_up_conv2x2
    up_conv2x2_grad_input = kernel_up_conv2x2_grad_input
    up_conv2x2_grad_weight = kernel_up_conv2x2_grad_weight
    conv1x1 = kernel_conv1x1
    conv1x1_grad_input = kernel_conv1x1_grad_input
    conv1x1_grad_weight = kernel_conv1x1_grad_weight
    bias_grad = kernel_bias_grad
    max_pool2x2 = kernel_max_pool2x2
    max_pool2x2_grad = kernel_max_pool2x2_grad
    relu = kernel_relu
    relu_grad = kernel_relu_grad
    crop = kernel_crop
    crop_grad = kernel_crop_grad
    concat = kernel_concat
    concat_grad = kernel_concat_grad
    dropout = kernel_dropout
    dropout_grad = kernel_dropout_grad
    softmax_cross_entropy = kernel_softmax_cross_entropy
    sgd_step = kernel_sgd_step

    def __init__(self, launcher):
        self.launcher = launcher
        self.name = launcher.name
        self.xp = launcher.xp

    def asarray(self, a):
        return self.launcher.asarray(a)

    def to_numpy(self, a):
        return self.launcher.to_numpy(a)

    def empty(self, shape, dtype):
        """Output buffers; the simulator fills them with NaN so an element a kernel forgot shows up."""
        return self.launcher.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype)

    def real(self, dtype, value):
        """A scalar of the kernel's element type (np.float32 or np.float64), never a Python float."""
        return np.dtype(dtype).type(value)

    def launch(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        """Launch kernel `kernel` of kernels/<stem>.cu compiled for element type `dtype`.

        Enforces what CuPy does not check: contiguous arrays, scalars of an exact C type.
        """
        for i, a in enumerate(args):
            if isinstance(a, _SCALAR_TYPES):
                continue
            if isinstance(a, (bool, int, float)):
                raise TypeError(f"{kernel}: argument {i} is a Python {type(a).__name__}; pass np.int32/np.float32/...")
            if isinstance(a, np.generic):  # np.int64, np.bool_, ...: CuPy would pass its own size, not the C type's
                raise TypeError(f"{kernel}: argument {i} is a numpy {type(a).__name__}; pass np.int32/np.uint32/"
                                f"np.float32/np.float64 as the kernel's parameter type")
            if not getattr(a, "flags", None) or not a.flags.c_contiguous:
                raise ValueError(f"{kernel}: argument {i} must be a C-contiguous array")
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        fn = self.launcher.function(stem, kernel, np.dtype(dtype))
        fn(grid, block, tuple(args), shared_mem=int(shared_mem))
