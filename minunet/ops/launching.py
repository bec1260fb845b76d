"""THE launch table: every kernel the cuda and sim devices launch, with its block, grid rule and tile.

One row per (op, direction, version): the kernel's name written out (grep `conv3x3_forward_v3` and you land
here), its file kernels/<file>.cu, the threads of its block, the rule that sizes its grid, the #defines of its
tile and its dynamic shared memory. The numbers are never copied: a row names the kernel's own `#define NAME
<int>` lines, and `define()` reads them from the .cu file and the headers it includes (common.cuh,
gemm_tile.cuh), so a tile changed in the kernel changes the launch with it.

The versions: VERSIONS (the exact ones), TF32_VERSIONS (tensor cores, float32 only, never a default) and
FUSED_RELU_VERSIONS come from the rows; DEFAULT_VERSIONS says which one runs when `version=` is not given,
for every op alike. `pick()` checks a `version=` and returns its row; each op's launch code (minunet/ops/<op>.py)
reads its row and calls the launch helper of the row's grid rule, at the end of this file.
"""
import dataclasses
import re
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from .. import paths

# ---------------------------------------------------------------------------------------------------------------
# the #defines of kernels/*.cu


class MissingDefineError(LookupError):
    """A row names a #define that its kernel file (and the headers it includes) does not have."""


_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+(\d+)\b", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"', re.M)


@lru_cache(maxsize=None)
def read_defines(folder, file_name):
    """{NAME: value} of every `#define NAME <int>` in folder/file_name and the headers it includes "...",
    and the names of the files read. Two different values for one name are an error."""
    found, files, todo = {}, [], [file_name]
    while todo:
        name = todo.pop(0)
        if name in files:
            continue
        files.append(name)
        text = (Path(folder) / name).read_text()
        for key, value in _DEFINE.findall(text):
            if found.setdefault(key, int(value)) != int(value):
                raise ValueError(f"{folder}/{name}: #define {key} {value} contradicts {found[key]}, its value in a "
                                 f"file read before it (reading {file_name} and its headers)")
        todo += _INCLUDE.findall(text)
    return found, tuple(files)


def define(file_name, name):
    """The value of `#define name <int>` in kernels/<file_name> (e.g. "conv3x3.cu") or a header it includes."""
    found, files = read_defines(str(paths.kernels_dir()), file_name)
    if name not in found:
        raise MissingDefineError(f"kernels/{file_name} (with {', '.join(files[1:]) or 'no headers'}) has no "
                                 f"`#define {name} <int>`, which minunet/ops/launch_table.py needs")
    return found[name]


# ---------------------------------------------------------------------------------------------------------------
# the rows

# Grid rules: how the launch helpers at the end of this file size the grid (and what `tile` holds for each).
PER_ELEMENT = "per_element"   # one thread per output element: cdiv(count, block) blocks
TILED = "tiled"               # tile = (TILE, COUT): a TILE x TILE block per output tile and group of COUT channels
GEMM = "gemm"                 # tile = (BM, BN): one block per BM x BN tile of the product, columns in grid x
SPLIT_K = "split_k"           # GEMM, plus grid z = slices of the summed pixels; `reduce` adds the slices
PER_WEIGHT = "per_weight"     # one block per (out, in) channel pair of the weight: it sums over every pixel
PER_WEIGHT_GROUP = "per_weight_group"  # tile = (GROUP,): one block per out channel and GROUP in channels
PER_CHANNEL = "per_channel"   # one block per channel (a reduction over N, H, W)

# Blocks and tiles, by the #defines that set them.
THREADS = ("MINUNET_THREADS",)               # common.cuh: per-element kernels and the block reductions
GEMM_THREADS = ("MINUNET_GEMM_THREADS",)     # gemm_tile.cuh
GEMM_TILE = ("MINUNET_GEMM_BM", "MINUNET_GEMM_BN")
V2_BLOCK = ("CONV3X3_V2_TILE", "CONV3X3_V2_TILE")
V2_TILE = ("CONV3X3_V2_TILE", "CONV3X3_V2_COUT")
REDUCE = "gemm_split_k_reduce"  # gemm_tile.cuh, compiled into each file that includes it: adds the split-K
                                # slices, one thread per element, MINUNET_THREADS per block


@dataclasses.dataclass(frozen=True)
class Launch:
    op: str
    direction: str          # forward, grad_input, grad_weight, backward; "" for an op of one kernel
    version: int
    kernel: str             # the extern "C" __global__ function, written out
    file: str               # kernels/<file>.cu
    block: tuple            # the #defines of the block's x (, y) threads
    grid: str               # a grid rule above
    tile: tuple = ()        # the #defines of the tile the grid rule divides by
    shared: tuple = ()      # dynamic shared memory: (#define of the element count, "real" or "double")
    tf32: bool = False      # tensor cores: not exact, float32 only, never a default
    fused_relu: bool = False  # the epilogue applies bias + ReLU (else the relu kernel runs after)
    reduce: str = ""        # split-K: the kernel that adds the slices, one thread per element

    @property
    def name(self):
        """The op and direction, as VERSIONS and DEFAULT_VERSIONS name them: "conv3x3_forward", "bias_grad"."""
        return f"{self.op}_{self.direction}" if self.direction else self.op

    # The numbers are read from the .cu file once per row (cached_property), not on every launch: a launch is on
    # the training step's hot path, and each read looks up the kernels folder on disk.
    def value(self, define_name):
        return define(f"{self.file}.cu", define_name)

    @cached_property
    def threads(self):
        return tuple(self.value(d) for d in self.block)

    @cached_property
    def tile_sizes(self):
        return tuple(self.value(d) for d in self.tile)

    @cached_property
    def _shared_count(self):
        return self.value(self.shared[0]) if self.shared else 0

    def shared_bytes(self, dtype):
        if not self.shared:
            return 0
        element = self.shared[1]
        return self._shared_count * np.dtype(dtype if element == "real" else element).itemsize

    @cached_property
    def reduce_row(self):
        """SPLIT_K: the row of the kernel that adds the slices (one thread per element of gw)."""
        return dataclasses.replace(self, kernel=self.reduce, block=THREADS, grid=PER_ELEMENT, tile=(), reduce="")


L = Launch
LAUNCHES = (
    # op / direction / version, the kernel, its file, block, grid rule, tile #defines, options
    L("conv3x3", "forward", 1, "conv3x3_forward_v1", "conv3x3", THREADS, PER_ELEMENT),
    L("conv3x3", "forward", 2, "conv3x3_forward_v2", "conv3x3", V2_BLOCK, TILED, V2_TILE),
    L("conv3x3", "forward", 3, "conv3x3_forward_v3", "conv3x3", GEMM_THREADS, GEMM, ("CONV3X3_V3_BM", "CONV3X3_V3_BN"),
      fused_relu=True),
    L("conv3x3", "forward", 4, "conv3x3_forward_v4", "conv3x3", GEMM_THREADS, GEMM, ("CONV3X3_V4_BM", "CONV3X3_V4_BN"),
      fused_relu=True),
    L("conv3x3", "forward", 5, "conv3x3_forward_v5", "conv3x3", GEMM_THREADS, GEMM, ("CONV3X3_V5_BM", "CONV3X3_V5_BN"),
      fused_relu=True, tf32=True),
    L("conv3x3", "grad_input", 1, "conv3x3_grad_input_v1", "conv3x3", THREADS, PER_ELEMENT),
    L("conv3x3", "grad_input", 2, "conv3x3_grad_input_v2", "conv3x3", V2_BLOCK, TILED, V2_TILE),
    L("conv3x3", "grad_input", 3, "conv3x3_grad_input_v3", "conv3x3", GEMM_THREADS, GEMM,
      ("CONV3X3_V3_BM", "CONV3X3_V3_BN")),
    L("conv3x3", "grad_input", 4, "conv3x3_grad_input_v4", "conv3x3", GEMM_THREADS, GEMM,
      ("CONV3X3_V4_BM", "CONV3X3_V4_BN")),
    L("conv3x3", "grad_input", 5, "conv3x3_grad_input_v5", "conv3x3", GEMM_THREADS, GEMM,
      ("CONV3X3_V5_BM", "CONV3X3_V5_BN"), tf32=True),
    L("conv3x3", "grad_weight", 1, "conv3x3_grad_weight_v1", "conv3x3", ("CONV3X3_GW_THREADS",), PER_WEIGHT),
    L("conv3x3", "grad_weight", 2, "conv3x3_grad_weight_v2", "conv3x3", V2_BLOCK, PER_WEIGHT_GROUP,
      ("CONV3X3_GW_V2_CIN",)),
    L("conv3x3", "grad_weight", 3, "conv3x3_grad_weight_v3", "conv3x3", GEMM_THREADS, SPLIT_K,
      ("CONV3X3_V3_BM", "CONV3X3_V3_BN"), reduce=REDUCE),
    L("conv3x3", "grad_weight", 4, "conv3x3_grad_weight_v4", "conv3x3", GEMM_THREADS, SPLIT_K,
      ("CONV3X3_V4_BM", "CONV3X3_V4_BN"), reduce=REDUCE),
    L("conv3x3", "grad_weight", 5, "conv3x3_grad_weight_v5", "conv3x3", GEMM_THREADS, SPLIT_K,
      ("CONV3X3_V5_BM", "CONV3X3_V5_BN"), reduce=REDUCE, tf32=True),
    L("up_conv2x2", "forward", 1, "up_conv2x2_forward_v1", "up_conv2x2", THREADS, PER_ELEMENT),
    L("up_conv2x2", "forward", 2, "up_conv2x2_forward_v2", "up_conv2x2", GEMM_THREADS, GEMM, GEMM_TILE),
    L("up_conv2x2", "grad_input", 1, "up_conv2x2_grad_input_v1", "up_conv2x2", THREADS, PER_ELEMENT),
    L("up_conv2x2", "grad_input", 2, "up_conv2x2_grad_input_v2", "up_conv2x2", GEMM_THREADS, GEMM, GEMM_TILE),
    L("up_conv2x2", "grad_weight", 1, "up_conv2x2_grad_weight_v1", "up_conv2x2", ("UP_CONV2X2_GW_THREADS",),
      PER_WEIGHT),
    L("up_conv2x2", "grad_weight", 2, "up_conv2x2_grad_weight_v2", "up_conv2x2", GEMM_THREADS, SPLIT_K, GEMM_TILE,
      reduce=REDUCE),
    L("conv1x1", "forward", 1, "conv1x1_forward_v1", "conv1x1", THREADS, PER_ELEMENT),
    L("conv1x1", "forward", 2, "conv1x1_forward_v2", "conv1x1", GEMM_THREADS, GEMM, GEMM_TILE),
    L("conv1x1", "grad_input", 1, "conv1x1_grad_input_v1", "conv1x1", THREADS, PER_ELEMENT),
    L("conv1x1", "grad_input", 2, "conv1x1_grad_input_v2", "conv1x1", GEMM_THREADS, GEMM, GEMM_TILE),
    L("conv1x1", "grad_weight", 1, "conv1x1_grad_weight_v1", "conv1x1", ("CONV1X1_GW_THREADS",), PER_WEIGHT),
    L("conv1x1", "grad_weight", 2, "conv1x1_grad_weight_v2", "conv1x1", GEMM_THREADS, SPLIT_K, GEMM_TILE,
      reduce=REDUCE),
    L("max_pool2x2", "forward", 1, "max_pool2x2_forward_v1", "max_pool2x2", THREADS, PER_ELEMENT),
    L("max_pool2x2", "backward", 1, "max_pool2x2_backward_v1", "max_pool2x2", THREADS, PER_ELEMENT),
    L("relu", "forward", 1, "relu_forward_v1", "elementwise", THREADS, PER_ELEMENT),
    L("relu", "backward", 1, "relu_backward_v1", "elementwise", THREADS, PER_ELEMENT),
    L("dropout", "forward", 1, "dropout_forward_v1", "elementwise", THREADS, PER_ELEMENT),
    L("multiply", "", 1, "multiply_v1", "elementwise", THREADS, PER_ELEMENT),        # dropout's backward
    L("copy_window", "", 1, "copy_window_v1", "elementwise", THREADS, PER_ELEMENT),  # crop, concat, their grads
    L("fill", "", 1, "fill_v1", "elementwise", THREADS, PER_ELEMENT),                # crop_grad's zeros
    L("bias_grad", "", 1, "bias_grad_v1", "elementwise", THREADS, PER_CHANNEL, shared=("MINUNET_THREADS", "real")),
    # its per-block loss sums are double even for float logits: see the kernel's header
    L("softmax_cross_entropy", "", 1, "softmax_cross_entropy_v1", "softmax_cross_entropy", THREADS, PER_ELEMENT,
      shared=("MINUNET_THREADS", "double")),
    L("sgd_step", "", 1, "sgd_step_v1", "sgd", THREADS, PER_ELEMENT),
)
ROWS = {(row.op, row.direction, row.version): row for row in LAUNCHES}

# ---------------------------------------------------------------------------------------------------------------
# the versions

# VERSIONS: the exact versions (float32 and float64, results equal to the reference up to rounding) ...
# TF32_VERSIONS: ... and the TF32 tensor-core versions, selectable with version= like the others but kept out
# of VERSIONS because they are not exact: float32 only, about 1e-3 relative error, sm_80 or newer on cuda (the
# sim emulates the tensor-core step, so their indexing is tested on the CPU too).
# FUSED_RELU_VERSIONS: forward versions whose kernel applies bias + ReLU in its epilogue (others launch the relu
# kernel after).
VERSIONS, TF32_VERSIONS, FUSED_RELU_VERSIONS = {}, {}, {}
for _row in LAUNCHES:
    if _row.tf32:
        TF32_VERSIONS[_row.name] = _row.version
    else:
        VERSIONS[_row.name] = VERSIONS.get(_row.name, ()) + (_row.version,)
    if _row.fused_relu:
        FUSED_RELU_VERSIONS[_row.name] = FUSED_RELU_VERSIONS.get(_row.name, ()) + (_row.version,)
del _row

# The kernel version each op launches by default. For the convolutions: the GEMM versions, chosen WITHOUT a GPU
# by counting global-memory traffic and shared loads per multiply-add (the headers give the argument); each
# passed every check on sim (tests/test_conv3x3*.py, test_up_conv2x2.py, test_conv1x1.py) and NVRTC reports no
# spill for it. The GPU benchmark (python -m minunet.bench, benchmarks/results/) must confirm the choice; TF32
# versions are never default.
DEFAULT_VERSIONS = {
    "conv3x3_forward": 3, "conv3x3_grad_input": 3, "conv3x3_grad_weight": 3,
    "up_conv2x2_forward": 2, "up_conv2x2_grad_input": 2, "up_conv2x2_grad_weight": 2,
    # The U-Net's 1x1 layer has Co = 2: a 64-row GEMM tile would be 97% empty, so v1 stays the default for
    # the forward and grad_input; its grad_weight reads x and gy once with v2 instead of Co and Ci times.
    "conv1x1_forward": 1, "conv1x1_grad_input": 1, "conv1x1_grad_weight": 2,
    "max_pool2x2_forward": 1, "max_pool2x2_backward": 1,
    "relu_forward": 1, "relu_backward": 1, "dropout_forward": 1, "multiply": 1, "copy_window": 1, "fill": 1,
    "bias_grad": 1, "softmax_cross_entropy": 1, "sgd_step": 1,
}


def all_versions(name):
    """Every selectable version of name ("conv3x3_forward"): the exact ones, then the TF32 one if there is one."""
    return VERSIONS[name] + ((TF32_VERSIONS[name],) if name in TF32_VERSIONS else ())


def pick(op, direction, version, dtype, backend=None):
    """The row of `version` (DEFAULT_VERSIONS' when None), after checking that it exists and can run here."""
    name = f"{op}_{direction}" if direction else op
    v = DEFAULT_VERSIONS[name] if version is None else version
    if isinstance(v, bool) or v not in all_versions(name):
        whole = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        missing = f" (there is no kernel {name}_v{v})" if whole else ""
        raise ValueError(f"{name}: version must be one of {all_versions(name)}, got {version!r}{missing}")
    row = ROWS[(op, direction, v)]
    if row.tf32:
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"{name}: version {v} computes in TF32 on tensor cores and takes float32 only, "
                             f"got {np.dtype(dtype)}")
        if backend is not None and backend.name == "cuda":
            import cupy
            major = int(cupy.cuda.Device().compute_capability) // 10
            if major < 8:
                raise ValueError(f"{name}: version {v} needs TF32 tensor cores (compute capability 8.0 or newer); "
                                 f"this GPU has {cupy.cuda.Device().compute_capability}")
    return row


INT32_MAX = 2**31 - 1  # the kernels index with int
GRID_YZ_MAX = 65535    # CUDA's limit on gridDim.y and gridDim.z


def check_int32_size(op, *shapes):
    for shape in shapes:
        if int(np.prod(shape, dtype=np.int64)) > INT32_MAX:
            raise ValueError(f"{op}: an array of shape {tuple(shape)} has more than 2**31-1 elements, "
                             f"too many for the kernels' int indexing; use a smaller batch or tile the image")


# ---------------------------------------------------------------------------------------------------------------
# the launch helpers, one per grid rule: a row, the problem's sizes, the kernel's arguments

def cdiv(a, b):
    """Blocks needed to cover a items with b per block (ceiling division)."""
    return (a + b - 1) // b


def i32(*values):
    """The kernels' int parameters: np.int32, never a Python int (CuPy would pass 8 bytes)."""
    return tuple(np.int32(v) for v in values)


def launch(be, row, dtype, grid, args):
    be.launch(row.file, row.kernel, dtype, grid, row.threads, args, shared_mem=row.shared_bytes(dtype))


def launch_per_element(be, row, dtype, count, args):
    """PER_ELEMENT (and the softmax's one thread per pixel): nothing to launch for an empty output."""
    check_int32_size(row.kernel, (count,))
    if count > 0:
        launch(be, row, dtype, (cdiv(count, row.threads[0]),), args)


def launch_blocks(be, row, dtype, blocks, args):
    """PER_WEIGHT, PER_WEIGHT_GROUP, PER_CHANNEL: a 1-D grid of `blocks` blocks, computed by the op."""
    launch(be, row, dtype, (blocks,), args)


def launch_gemm(be, row, dtype, rows, cols, args):
    """GEMM: one block per BM x BN tile of the rows x cols product (columns in grid x)."""
    if rows > 0 and cols > 0:
        BM, BN = row.tile_sizes
        launch(be, row, dtype, (cdiv(cols, BN), cdiv(rows, BM)), args)


def launch_tiled(be, row, dtype, N, channels, H, W, args):
    """TILED: a TILE x TILE block per output tile of H x W and group of COUT channels."""
    if min(N, channels, H, W) <= 0:
        return
    T, group = row.tile_sizes
    grid = (cdiv(W, T), cdiv(H, T), N * cdiv(channels, group))
    if max(grid[1:]) > GRID_YZ_MAX:
        raise ValueError(f"{row.kernel}: grid {grid} exceeds CUDA's limit of {GRID_YZ_MAX} blocks in y and z; "
                         f"use another version or a smaller batch")
    launch(be, row, dtype, grid, args)


SPLIT_K_TARGET_BLOCKS = 1024  # split-K grad_weight: slice the pixels until about this many blocks run
SPLIT_K_MIN_CHUNK = 256       # ... but give each block at least this many pixels to sum


def split_k(pixels, tiles):
    """(chunk, splits) for a split-K grad_weight: chunk a multiple of MINUNET_GEMM_BK, splits*chunk >= pixels."""
    BK = define("gemm_tile.cuh", "MINUNET_GEMM_BK")
    splits = max(1, min(cdiv(pixels, SPLIT_K_MIN_CHUNK), cdiv(SPLIT_K_TARGET_BLOCKS, max(tiles, 1))))
    chunk = cdiv(cdiv(max(pixels, 1), splits), BK) * BK
    return chunk, cdiv(max(pixels, 1), chunk)


def launch_split_k(be, row, x, gw, rows, cols, pixels, args):
    """SPLIT_K: block z sums the pixel slice [z*chunk, (z+1)*chunk) into partial[z]; the reduce kernel adds the
    slices in a fixed order (deterministic). With one slice the kernel writes gw directly. args(out) gives the
    kernel's arguments up to the chunk."""
    BM, BN = row.tile_sizes
    chunk, splits = split_k(pixels, cdiv(rows, BM) * cdiv(cols, BN))
    partial = gw if splits == 1 else be.empty((splits,) + gw.shape, x.dtype)
    launch(be, row, x.dtype, (cdiv(cols, BN), cdiv(rows, BM), splits), args(partial) + i32(chunk))
    if splits > 1:
        launch_per_element(be, row.reduce_row, x.dtype, gw.size, (partial, gw) + i32(gw.size, splits))
