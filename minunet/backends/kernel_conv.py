"""The convolutions on the kernel devices (cuda, sim): output allocation and launch configurations.

Kernels live in kernels/conv3x3.cu, kernels/up_conv2x2.cu and kernels/conv1x1.cu (their headers say what
each version does). Each method takes an optional `version=`; without it the op's entry of DEFAULT_VERSIONS
is used, so a faster kernel can be added beside v1 and promoted by changing one number here.
"""
import numpy as np

from .grid import cdiv

# The kernel version each op launches by default, and the versions that exist.
DEFAULT_VERSIONS = {
    "conv3x3_forward": 2, "conv3x3_grad_input": 1, "conv3x3_grad_weight": 1,
    "up_conv2x2_forward": 1, "up_conv2x2_grad_input": 1, "up_conv2x2_grad_weight": 1,
    "conv1x1_forward": 1, "conv1x1_grad_input": 1, "conv1x1_grad_weight": 1,
}
VERSIONS = {op: (1,) for op in DEFAULT_VERSIONS}
VERSIONS["conv3x3_forward"] = (1, 2)

THREADS = 256             # one-thread-per-element kernels: threads per block
GRAD_WEIGHT_THREADS = 256  # must equal CONV3X3_GW_THREADS, UP_CONV2X2_GW_THREADS, CONV1X1_GW_THREADS
CONV3X3_V2_TILE = 16       # must equal CONV3X3_V2_TILE in conv3x3.cu
CONV3X3_V2_COUT = 8        # must equal CONV3X3_V2_COUT in conv3x3.cu
_INT32_MAX = 2**31 - 1     # the kernels index with int
_GRID_YZ_MAX = 65535       # CUDA's limit on gridDim.y and gridDim.z


def _pick_version(op, version):
    v = DEFAULT_VERSIONS[op] if version is None else version
    if v not in VERSIONS[op]:
        raise ValueError(f"{op}: version must be one of {VERSIONS[op]}, got {version!r}")
    return v


def _check_int32_size(op, *shapes):
    for shape in shapes:
        if int(np.prod(shape, dtype=np.int64)) > _INT32_MAX:
            raise ValueError(f"{op}: an array of shape {tuple(shape)} has more than 2**31-1 elements, "
                             f"too many for the kernels' int indexing; use a smaller batch or tile the image")


def _i32(*values):
    return tuple(np.int32(v) for v in values)


class ConvKernelOps:
    def _launch_per_element(self, stem, kernel, dtype, count, args):
        """One thread per element of a count-element output; nothing to launch for an empty output."""
        if count > 0:
            self.launch(stem, kernel, dtype, (cdiv(count, THREADS),), (THREADS,), args)

    def _bias_args(self, w, b):
        # Without a bias the kernel never reads b; it still needs a valid pointer of the right type.
        return (w if b is None else b), np.int32(b is not None)

    # ---- conv3x3 ----

    def conv3x3(self, x, w, b, pad, *, version=None):
        v = _pick_version("conv3x3_forward", version)
        N, Ci, H, W = x.shape
        Co = w.shape[0]
        Ho, Wo = max(H - 2 + 2 * pad, 0), max(W - 2 + 2 * pad, 0)
        _check_int32_size("conv3x3", x.shape, (N, Co, Ho, Wo))
        y = self.empty((N, Co, Ho, Wo), x.dtype)
        if y.size == 0:
            return y
        bias, has_bias = self._bias_args(w, b)
        args = (x, w, bias, y) + _i32(N, Ci, H, W, Co, pad) + (has_bias,)
        if v == 1:
            self._launch_per_element("conv3x3", "conv3x3_forward_v1", x.dtype, y.size, args)
        else:
            T = CONV3X3_V2_TILE
            grid = (cdiv(Wo, T), cdiv(Ho, T), N * cdiv(Co, CONV3X3_V2_COUT))
            if max(grid[1:]) > _GRID_YZ_MAX:
                raise ValueError(f"conv3x3 v2: grid {grid} exceeds CUDA's limit of {_GRID_YZ_MAX} blocks in y "
                                 f"and z; use version=1 or a smaller batch")
            self.launch("conv3x3", "conv3x3_forward_v2", x.dtype, grid, (T, T, 1), args)
        return y

    def conv3x3_grad_input(self, gy, w, pad, x_shape, *, version=None):
        _pick_version("conv3x3_grad_input", version)
        N, Ci, H, W = x_shape
        Co = w.shape[0]
        _check_int32_size("conv3x3_grad_input", x_shape, gy.shape)
        gx = self.empty(tuple(x_shape), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H, W, Co, pad)
        self._launch_per_element("conv3x3", "conv3x3_grad_input_v1", gy.dtype, gx.size, args)
        return gx

    def conv3x3_grad_weight(self, x, gy, pad, *, version=None):
        _pick_version("conv3x3_grad_weight", version)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("conv3x3_grad_weight", x.shape, gy.shape)
        gw = self.empty((Co, Ci, 3, 3), x.dtype)
        if gw.size:  # one block per (o, c); an empty gy still gives a block that writes zeros
            args = (x, gy, gw) + _i32(N, Ci, H, W, Co, pad)
            self.launch("conv3x3", "conv3x3_grad_weight_v1", x.dtype, (Co * Ci,), (GRAD_WEIGHT_THREADS,), args)
        return gw

    # ---- up_conv2x2 (transposed, stride 2; w is (Ci, Co, 2, 2)) ----

    def up_conv2x2(self, x, w, b, *, version=None):
        _pick_version("up_conv2x2_forward", version)
        N, Ci, H, W = x.shape
        Co = w.shape[1]
        _check_int32_size("up_conv2x2", (N, Co, 2 * H, 2 * W))
        y = self.empty((N, Co, 2 * H, 2 * W), x.dtype)
        bias, has_bias = self._bias_args(w, b)
        args = (x, w, bias, y) + _i32(N, Ci, H, W, Co) + (has_bias,)
        self._launch_per_element("up_conv2x2", "up_conv2x2_forward_v1", x.dtype, y.size, args)
        return y

    def up_conv2x2_grad_input(self, gy, w, *, version=None):
        _pick_version("up_conv2x2_grad_input", version)
        N, Co, H2, W2 = gy.shape
        Ci = w.shape[0]
        _check_int32_size("up_conv2x2_grad_input", gy.shape)
        gx = self.empty((N, Ci, H2 // 2, W2 // 2), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H2 // 2, W2 // 2, Co)
        self._launch_per_element("up_conv2x2", "up_conv2x2_grad_input_v1", gy.dtype, gx.size, args)
        return gx

    def up_conv2x2_grad_weight(self, x, gy, *, version=None):
        _pick_version("up_conv2x2_grad_weight", version)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("up_conv2x2_grad_weight", gy.shape)
        gw = self.empty((Ci, Co, 2, 2), x.dtype)
        if gw.size:
            args = (x, gy, gw) + _i32(N, Ci, H, W, Co)
            self.launch("up_conv2x2", "up_conv2x2_grad_weight_v1", x.dtype, (Ci * Co,), (GRAD_WEIGHT_THREADS,),
                        args)
        return gw

    # ---- conv1x1 (w is (Co, Ci, 1, 1)) ----

    def conv1x1(self, x, w, b, *, version=None):
        _pick_version("conv1x1_forward", version)
        N, Ci, H, W = x.shape
        Co = w.shape[0]
        _check_int32_size("conv1x1", x.shape, (N, Co, H, W))
        y = self.empty((N, Co, H, W), x.dtype)
        bias, has_bias = self._bias_args(w, b)
        args = (x, w, bias, y) + _i32(N, Ci, H * W, Co) + (has_bias,)
        self._launch_per_element("conv1x1", "conv1x1_forward_v1", x.dtype, y.size, args)
        return y

    def conv1x1_grad_input(self, gy, w, *, version=None):
        _pick_version("conv1x1_grad_input", version)
        N, Co, H, W = gy.shape
        Ci = w.shape[1]
        _check_int32_size("conv1x1_grad_input", gy.shape, (N, Ci, H, W))
        gx = self.empty((N, Ci, H, W), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H * W, Co)
        self._launch_per_element("conv1x1", "conv1x1_grad_input_v1", gy.dtype, gx.size, args)
        return gx

    def conv1x1_grad_weight(self, x, gy, *, version=None):
        _pick_version("conv1x1_grad_weight", version)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("conv1x1_grad_weight", x.shape, gy.shape)
        gw = self.empty((Co, Ci, 1, 1), x.dtype)
        if gw.size:
            args = (x, gy, gw) + _i32(N, Ci, H * W, Co)
            self.launch("conv1x1", "conv1x1_grad_weight_v1", x.dtype, (Co * Ci,), (GRAD_WEIGHT_THREADS,), args)
        return gw
