"""The U-Net's operators, differentiable: `import minunet.functional as F`, then F.conv3x3(x, w, b), ...

Layouts are PyTorch's (NCHW; conv weights (Cout, Cin, kh, kw); transposed-conv weights (Cin, Cout, 2, 2)), so
every result can be compared with PyTorch directly. Each operator is a Function whose forward and backward
call one backend op per direction (see ARCHITECTURE.md); on "cuda" and "sim" each op is a kernel of kernels/.
Each lives with every other part of it in minunet/ops/<op>.py (checks, Function, numpy path, kernel launches).

Bad input is a TypeError (wrong kind or dtype) or ValueError (wrong shape, values or device) that names the
argument and what was expected. Nothing is cast silently.
"""
from .ops.conv1x1 import conv1x1
from .ops.conv3x3 import conv3x3
from .ops.elementwise import center_crop, concat, dropout, relu
from .ops.max_pool2x2 import max_pool2x2
from .ops.softmax_cross_entropy import weighted_softmax_cross_entropy
from .ops.up_conv2x2 import up_conv2x2

__all__ = ["conv3x3", "conv1x1", "up_conv2x2", "max_pool2x2", "relu", "center_crop", "concat", "dropout",
           "weighted_softmax_cross_entropy"]
