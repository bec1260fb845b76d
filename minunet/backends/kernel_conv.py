"""The convolutions on the kernel devices (cuda, sim): output allocation and launch configurations.

Kernels live in kernels/conv3x3.cu, kernels/up_conv2x2.cu and kernels/conv1x1.cu (their headers say what
each version does). Each method takes an optional `version=`; without it the op's entry of DEFAULT_VERSIONS
is used, so a faster kernel can be added beside v1 and promoted by changing one number here.
"""
import numpy as np

from .grid import cdiv

# The kernel version each op launches by default, and the versions that exist (kernels/*.cu headers say
# what each does). Defaults: the GEMM versions, chosen WITHOUT a GPU by counting global-memory traffic and
# shared loads per multiply-add (the headers give the argument); each passed every check on sim
# (tests/test_conv_ops.py, tests/test_conv_versions.py) and NVRTC reports no spill for it. The GPU benchmark
# (python -m minunet.bench, benchmarks/results/) must confirm the choice; TF32 versions are never default.
DEFAULT_VERSIONS = {
    "conv3x3_forward": 3, "conv3x3_grad_input": 3, "conv3x3_grad_weight": 3,
    "up_conv2x2_forward": 2, "up_conv2x2_grad_input": 2, "up_conv2x2_grad_weight": 2,
    # The U-Net's 1x1 layer has Co = 2: a 64-row GEMM tile would be 97% empty, so v1 stays the default for
    # the forward and grad_input; its grad_weight reads x and gy once with v2 instead of Co and Ci times.
    "conv1x1_forward": 1, "conv1x1_grad_input": 1, "conv1x1_grad_weight": 2,
}
# The exact versions (float32 and float64, results equal to the reference up to rounding) ...
VERSIONS = {
    "conv3x3_forward": (1, 2, 3, 4), "conv3x3_grad_input": (1, 2, 3, 4), "conv3x3_grad_weight": (1, 2, 3, 4),
    "up_conv2x2_forward": (1, 2), "up_conv2x2_grad_input": (1, 2), "up_conv2x2_grad_weight": (1, 2),
    "conv1x1_forward": (1, 2), "conv1x1_grad_input": (1, 2), "conv1x1_grad_weight": (1, 2),
}
# ... and the TF32 tensor-core versions, selectable with version= like the others but kept out of VERSIONS
# because they are not exact: float32 only, about 1e-3 relative error, sm_80 or newer on cuda (the sim
# emulates the tensor-core step, so their indexing is tested on the CPU too).
TF32_VERSIONS = {"conv3x3_forward": 5, "conv3x3_grad_input": 5, "conv3x3_grad_weight": 5}


def all_versions(op):
    """Every selectable version of op: the exact ones, then the TF32 one if there is one."""
    return VERSIONS[op] + ((TF32_VERSIONS[op],) if op in TF32_VERSIONS else ())


# Forward versions whose kernel applies bias + ReLU in its epilogue (others launch the relu kernel after).
FUSED_RELU_VERSIONS = {"conv3x3_forward": (3, 4, 5)}

THREADS = 256             # one-thread-per-element kernels: threads per block
GRAD_WEIGHT_THREADS = 256  # must equal CONV3X3_GW_THREADS, UP_CONV2X2_GW_THREADS, CONV1X1_GW_THREADS
CONV3X3_V2_TILE = 16       # must equal CONV3X3_V2_TILE in conv3x3.cu
CONV3X3_V2_COUT = 8        # must equal CONV3X3_V2_COUT in conv3x3.cu
CONV3X3_GW_V2_CIN = 4      # must equal CONV3X3_GW_V2_CIN in conv3x3.cu
GEMM_BM, GEMM_BN, GEMM_BK = 64, 64, 16  # the GEMM versions' block tile: MINUNET_GEMM_BM/BN/BK in gemm_tile.cuh
CONV3X3_GEMM_TILE = {3: (64, 64), 4: (128, 128), 5: (64, 64)}  # (BM, BN) of each conv3x3 GEMM version
GEMM_THREADS = 256                      # MINUNET_GEMM_THREADS in gemm_tile.cuh
SPLIT_K_TARGET_BLOCKS = 1024  # split-K grad_weight: slice the pixels until about this many blocks run
SPLIT_K_MIN_CHUNK = 256       # ... but give each block at least this many pixels to sum
_INT32_MAX = 2**31 - 1     # the kernels index with int
_GRID_YZ_MAX = 65535       # CUDA's limit on gridDim.y and gridDim.z


def split_k(pixels, tiles):
    """(chunk, splits) for a split-K grad_weight: chunk a multiple of GEMM_BK, splits*chunk >= pixels."""
    splits = max(1, min(cdiv(pixels, SPLIT_K_MIN_CHUNK), cdiv(SPLIT_K_TARGET_BLOCKS, max(tiles, 1))))
    chunk = cdiv(cdiv(max(pixels, 1), splits), GEMM_BK) * GEMM_BK
    return chunk, cdiv(max(pixels, 1), chunk)


def _pick_version(op, version, dtype=None, backend=None):
    v = DEFAULT_VERSIONS[op] if version is None else version
    if isinstance(v, bool) or v not in all_versions(op):
        raise ValueError(f"{op}: version must be one of {all_versions(op)}, got {version!r}")
    if TF32_VERSIONS.get(op) == v:
        if dtype is not None and np.dtype(dtype) != np.float32:
            raise ValueError(f"{op}: version {v} computes in TF32 on tensor cores and takes float32 only, "
                             f"got {np.dtype(dtype)}")
        if backend is not None and backend.name == "cuda":
            import cupy
            major = int(cupy.cuda.Device().compute_capability) // 10
            if major < 8:
                raise ValueError(f"{op}: version {v} needs TF32 tensor cores (compute capability 8.0 or newer); "
                                 f"this GPU has {cupy.cuda.Device().compute_capability}")
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

    def _launch_gemm(self, stem, kernel, dtype, rows, cols, args, tile=(GEMM_BM, GEMM_BN)):
        """A GEMM-version kernel: one block of GEMM_THREADS per BM x BN tile (columns in grid x)."""
        if rows > 0 and cols > 0:
            self.launch(stem, kernel, dtype, (cdiv(cols, tile[1]), cdiv(rows, tile[0])), (GEMM_THREADS,), args)

    def _split_k_grad_weight(self, stem, kernel, x, gw, rows, cols, pixels, args, tile=(GEMM_BM, GEMM_BN)):
        """Split-K: block z sums the pixel slice [z*chunk, (z+1)*chunk) into partial[z]; the reduce kernel adds
        the slices in a fixed order (deterministic). With one slice the kernel writes gw directly."""
        BM, BN = tile
        chunk, splits = split_k(pixels, cdiv(rows, BM) * cdiv(cols, BN))
        partial = gw if splits == 1 else self.empty((splits,) + gw.shape, x.dtype)
        grid = (cdiv(cols, BN), cdiv(rows, BM), splits)
        self.launch(stem, kernel, x.dtype, grid, (GEMM_THREADS,), args(partial) + _i32(chunk))
        if splits > 1:
            self._launch_per_element(stem, "gemm_split_k_reduce", x.dtype, gw.size,
                                     (partial, gw) + _i32(gw.size, splits))

    def _launch_tiled(self, stem, kernel, dtype, N, Cout, Ho, Wo, args):
        """A v2 (shared-memory tile) kernel: a TILE x TILE block per output tile and group of COUT channels."""
        if min(N, Cout, Ho, Wo) <= 0:
            return
        T = CONV3X3_V2_TILE
        grid = (cdiv(Wo, T), cdiv(Ho, T), N * cdiv(Cout, CONV3X3_V2_COUT))
        if max(grid[1:]) > _GRID_YZ_MAX:
            raise ValueError(f"{kernel}: grid {grid} exceeds CUDA's limit of {_GRID_YZ_MAX} blocks in y and z; "
                             f"use another version or a smaller batch")
        self.launch(stem, kernel, dtype, grid, (T, T, 1), args)

    # ---- conv3x3 ----

    def conv3x3(self, x, w, b, pad, *, version=None, relu=False):
        """relu=True returns max(conv3x3(x, w, b), 0): fused into the kernel's epilogue for the GEMM versions
        (FUSED_RELU_VERSIONS), a separate relu launch for the others."""
        v = _pick_version("conv3x3_forward", version, x.dtype, self)
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
        elif v == 2:
            self._launch_tiled("conv3x3", "conv3x3_forward_v2", x.dtype, N, Co, Ho, Wo, args)
        else:  # the GEMM versions: bias and ReLU fused into the epilogue (FUSED_RELU_VERSIONS)
            self._launch_gemm("conv3x3", f"conv3x3_forward_v{v}", x.dtype, Co, N * Ho * Wo,
                              args + _i32(int(bool(relu))), CONV3X3_GEMM_TILE[v])
        return self.relu(y) if relu and v not in FUSED_RELU_VERSIONS["conv3x3_forward"] else y

    def conv3x3_grad_input(self, gy, w, pad, x_shape, *, version=None):
        v = _pick_version("conv3x3_grad_input", version, gy.dtype, self)
        N, Ci, H, W = x_shape
        Co = w.shape[0]
        _check_int32_size("conv3x3_grad_input", x_shape, gy.shape)
        gx = self.empty(tuple(x_shape), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H, W, Co, pad)
        if v == 1:
            self._launch_per_element("conv3x3", "conv3x3_grad_input_v1", gy.dtype, gx.size, args)
        elif v == 2:
            self._launch_tiled("conv3x3", "conv3x3_grad_input_v2", gy.dtype, N, Ci, H, W, args)
        else:
            self._launch_gemm("conv3x3", f"conv3x3_grad_input_v{v}", gy.dtype, Ci, N * H * W, args,
                              CONV3X3_GEMM_TILE[v])
        return gx

    def conv3x3_grad_weight(self, x, gy, pad, *, version=None):
        v = _pick_version("conv3x3_grad_weight", version, x.dtype, self)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("conv3x3_grad_weight", x.shape, gy.shape)
        gw = self.empty((Co, Ci, 3, 3), x.dtype)
        if not gw.size:
            return gw
        if v == 1:  # one block per (o, c); an empty gy still gives a block that writes zeros
            args = (x, gy, gw) + _i32(N, Ci, H, W, Co, pad)
            self.launch("conv3x3", "conv3x3_grad_weight_v1", x.dtype, (Co * Ci,), (GRAD_WEIGHT_THREADS,), args)
        elif v == 2:  # one block per (o, group of CONV3X3_GW_V2_CIN input channels)
            args = (x, gy, gw) + _i32(N, Ci, H, W, Co, pad)
            grid = (Co * cdiv(Ci, CONV3X3_GW_V2_CIN),)
            self.launch("conv3x3", "conv3x3_grad_weight_v2", x.dtype, grid, (CONV3X3_V2_TILE, CONV3X3_V2_TILE, 1), args)
        else:
            self._split_k_grad_weight("conv3x3", f"conv3x3_grad_weight_v{v}", x, gw, Co, Ci * 9, gy[:, 0].size,
                                      lambda out: (x, gy, out) + _i32(N, Ci, H, W, Co, pad), CONV3X3_GEMM_TILE[v])
        return gw

    # ---- up_conv2x2 (transposed, stride 2; w is (Ci, Co, 2, 2)) ----

    def up_conv2x2(self, x, w, b, *, version=None):
        v = _pick_version("up_conv2x2_forward", version)
        N, Ci, H, W = x.shape
        Co = w.shape[1]
        _check_int32_size("up_conv2x2", (N, Co, 2 * H, 2 * W))
        y = self.empty((N, Co, 2 * H, 2 * W), x.dtype)
        bias, has_bias = self._bias_args(w, b)
        args = (x, w, bias, y) + _i32(N, Ci, H, W, Co) + (has_bias,)
        if v == 1:
            self._launch_per_element("up_conv2x2", "up_conv2x2_forward_v1", x.dtype, y.size, args)
        else:
            self._launch_gemm("up_conv2x2", "up_conv2x2_forward_v2", x.dtype, 4 * Co, N * H * W, args)
        return y

    def up_conv2x2_grad_input(self, gy, w, *, version=None):
        v = _pick_version("up_conv2x2_grad_input", version)
        N, Co, H2, W2 = gy.shape
        Ci = w.shape[0]
        _check_int32_size("up_conv2x2_grad_input", gy.shape)
        gx = self.empty((N, Ci, H2 // 2, W2 // 2), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H2 // 2, W2 // 2, Co)
        if v == 1:
            self._launch_per_element("up_conv2x2", "up_conv2x2_grad_input_v1", gy.dtype, gx.size, args)
        else:
            self._launch_gemm("up_conv2x2", "up_conv2x2_grad_input_v2", gy.dtype, Ci, gx[:, 0].size, args)
        return gx

    def up_conv2x2_grad_weight(self, x, gy, *, version=None):
        v = _pick_version("up_conv2x2_grad_weight", version)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("up_conv2x2_grad_weight", gy.shape)
        gw = self.empty((Ci, Co, 2, 2), x.dtype)
        if not gw.size:
            return gw
        if v == 1:
            args = (x, gy, gw) + _i32(N, Ci, H, W, Co)
            self.launch("up_conv2x2", "up_conv2x2_grad_weight_v1", x.dtype, (Ci * Co,), (GRAD_WEIGHT_THREADS,),
                        args)
        else:
            self._split_k_grad_weight("up_conv2x2", "up_conv2x2_grad_weight_v2", x, gw, Ci, 4 * Co, N * H * W,
                                      lambda out: (x, gy, out) + _i32(N, Ci, H, W, Co))
        return gw

    # ---- conv1x1 (w is (Co, Ci, 1, 1)) ----

    def conv1x1(self, x, w, b, *, version=None):
        v = _pick_version("conv1x1_forward", version)
        N, Ci, H, W = x.shape
        Co = w.shape[0]
        _check_int32_size("conv1x1", x.shape, (N, Co, H, W))
        y = self.empty((N, Co, H, W), x.dtype)
        bias, has_bias = self._bias_args(w, b)
        args = (x, w, bias, y) + _i32(N, Ci, H * W, Co) + (has_bias,)
        if v == 1:
            self._launch_per_element("conv1x1", "conv1x1_forward_v1", x.dtype, y.size, args)
        else:
            self._launch_gemm("conv1x1", "conv1x1_forward_v2", x.dtype, Co, N * H * W, args)
        return y

    def conv1x1_grad_input(self, gy, w, *, version=None):
        v = _pick_version("conv1x1_grad_input", version)
        N, Co, H, W = gy.shape
        Ci = w.shape[1]
        _check_int32_size("conv1x1_grad_input", gy.shape, (N, Ci, H, W))
        gx = self.empty((N, Ci, H, W), gy.dtype)
        args = (gy, w, gx) + _i32(N, Ci, H * W, Co)
        if v == 1:
            self._launch_per_element("conv1x1", "conv1x1_grad_input_v1", gy.dtype, gx.size, args)
        else:
            self._launch_gemm("conv1x1", "conv1x1_grad_input_v2", gy.dtype, Ci, N * H * W, args)
        return gx

    def conv1x1_grad_weight(self, x, gy, *, version=None):
        v = _pick_version("conv1x1_grad_weight", version)
        N, Ci, H, W = x.shape
        Co = gy.shape[1]
        _check_int32_size("conv1x1_grad_weight", x.shape, gy.shape)
        gw = self.empty((Co, Ci, 1, 1), x.dtype)
        if not gw.size:
            return gw
        if v == 1:
            args = (x, gy, gw) + _i32(N, Ci, H * W, Co)
            self.launch("conv1x1", "conv1x1_grad_weight_v1", x.dtype, (Co * Ci,), (GRAD_WEIGHT_THREADS,), args)
        else:
            self._split_k_grad_weight("conv1x1", "conv1x1_grad_weight_v2", x, gw, Co, Ci, N * H * W,
                                      lambda out: (x, gy, out) + _i32(N, Ci, H * W, Co))
        return gw
