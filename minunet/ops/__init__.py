"""The operators, one file per family, each holding every Python part of its op (see launch_table.py for the
kernels' launch rows):

    conv3x3.py, conv1x1.py, up_conv2x2.py, max_pool2x2.py, softmax_cross_entropy.py, sgd.py,
    elementwise.py (relu, crop, concat, dropout, bias_grad)

Each file, in order: the argument checks, the user function (re-exported by minunet.functional) and its autograd
Function, the numpy device's fast path `numpy_<backend op>`, the cuda/sim launches `kernel_<backend op>(be, ...)`.
minunet/backends/numpy_backend.py and kernel_backend.py compose these into the devices' backend ops.
"""
