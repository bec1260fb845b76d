"""What every kernel launcher shares: the kernels' #defines, the version registry, and sizing helpers.

A kernel version has exactly one launcher: a function named as its kernel (`conv3x3_forward_v3`) in
minunet/ops/<op>.py, holding its block, grid and dynamic shared memory where you read the launch, as llm.c's
`layernorm_forward3` does. `@launcher(...)` registers it as a version of its op and direction; VERSIONS,
TF32_VERSIONS and `pick` come from those registrations, so a new version is one kernel plus one launcher.

The tile sizes live in the .cu files only (the kernel needs them at compile time): a launcher reads them through
`KernelDefines`, which reads every `#define NAME <int>` of the file and the headers it includes once, on first
use. So a tile changed in the kernel changes its launch with it, and no number is written twice.
"""
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import paths

# -- the #defines of kernels/*.cu ------------------------------------------------------------------------------


class MissingDefineError(LookupError):
    """A launcher asks for a #define that its kernel file (and the headers it includes) does not have."""


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


class KernelDefines:
    """The integer #defines of kernels/<file> and the headers it includes, as attributes:
    `KernelDefines("conv3x3.cu").CONV3X3_V3_BM`."""

    def __init__(self, file):
        self.file = file

    def __getattr__(self, name):  # only for names not read yet: the first use reads the file
        if name.startswith("__"):
            raise AttributeError(name)
        found, files = read_defines(str(paths.kernels_dir()), self.file)
        if name not in found:
            raise MissingDefineError(f"kernels/{self.file} (with {', '.join(files[1:]) or 'no headers'}) has no "
                                     f"`#define {name} <int>`, which its launcher in minunet/ops/ needs")
        setattr(self, name, found[name])  # a launch is on the training step's hot path: read the disk once
        return found[name]


# -- the versions ------------------------------------------------------------------------------------------------

# VERSIONS: the exact versions (float32 and float64, results equal to the reference up to rounding) ...
# TF32_VERSIONS: ... and the TF32 tensor-core versions, selectable with version= like the others but kept out
# of VERSIONS because they are not exact: float32 only, about 1e-3 relative error, sm_80 or newer on cuda (the
# sim emulates the tensor-core step, so their indexing is tested on the CPU too).
VERSIONS, TF32_VERSIONS, LAUNCHERS = {}, {}, {}

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

_VERSIONED = re.compile(r"(\w+)_v(\d+)$")


def launcher(fn=None, *, tf32=False):
    """Register a launcher (`@launcher`, or `@launcher(tf32=True)` for a kernel that computes on TF32 tensor
    cores: float32 only, never a default). Its name is its kernel's: `<op>[_<direction>]_v<N>`."""
    if fn is None:
        return lambda fn: launcher(fn, tf32=tf32)
    match = _VERSIONED.match(fn.__name__)
    if not match:
        raise NameError(f"launcher {fn.__name__}: its name must be its kernel's, <op>[_<direction>]_v<N>")
    name, version = match.group(1), int(match.group(2))
    if version in LAUNCHERS.get(name, {}):
        raise ValueError(f"two launchers for {fn.__name__}")
    fn.tf32 = tf32
    LAUNCHERS.setdefault(name, {})[version] = fn
    if tf32:
        TF32_VERSIONS[name] = version
    else:
        VERSIONS[name] = tuple(sorted(VERSIONS.get(name, ()) + (version,)))
    return fn


def all_versions(name):
    """Every selectable version of name ("conv3x3_forward"): the exact ones, then the TF32 one if there is one."""
    return VERSIONS[name] + ((TF32_VERSIONS[name],) if name in TF32_VERSIONS else ())


def pick(name, version, dtype, backend):
    """The launcher of `version` of name (DEFAULT_VERSIONS' when None), after checking it can run here."""
    v = DEFAULT_VERSIONS[name] if version is None else version
    if isinstance(v, bool) or v not in all_versions(name):
        whole = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        missing = f" (there is no kernel {name}_v{v})" if whole else ""
        raise ValueError(f"{name}: version must be one of {all_versions(name)}, got {version!r}{missing}")
    fn = LAUNCHERS[name][v]
    if fn.tf32:
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"{name}: version {v} computes in TF32 on tensor cores and takes float32 only, "
                             f"got {np.dtype(dtype)}")
        capability = backend.compute_capability()
        if capability is not None and capability < 80:
            raise ValueError(f"{name}: version {v} needs TF32 tensor cores (compute capability 8.0 or newer); "
                             f"this GPU has {capability}")
    return fn


# -- sizes ---------------------------------------------------------------------------------------------------------
INT32_MAX = 2**31 - 1  # the kernels index with int
GRID_YZ_MAX = 65535    # CUDA's limit on gridDim.y and gridDim.z


def check_int32_size(op, *shapes):
    for shape in shapes:
        if int(np.prod(shape, dtype=np.int64)) > INT32_MAX:
            raise ValueError(f"{op}: an array of shape {tuple(shape)} has more than 2**31-1 elements, "
                             f"too many for the kernels' int indexing; use a smaller batch or tile the image")


def check_grid_yz(kernel, grid):
    if max(grid[1:]) > GRID_YZ_MAX:
        raise ValueError(f"{kernel}: grid {grid} exceeds CUDA's limit of {GRID_YZ_MAX} blocks in y and z; "
                         f"use another version or a smaller batch")


def cdiv(a, b):
    """Blocks needed to cover a items with b per block (ceiling division)."""
    return (a + b - 1) // b


def i32(*values):
    """The kernels' int parameters: np.int32, never a Python int (CuPy would pass 8 bytes)."""
    return tuple(np.int32(v) for v in values)


# -- split-K: the weight gradients' sum over every pixel, sliced so that enough blocks run -------------------------
SPLIT_K_TARGET_BLOCKS = 1024  # slice the pixels until about this many blocks run ...
SPLIT_K_MIN_CHUNK = 256       # ... but give each block at least this many pixels to sum
GEMM_TILE = KernelDefines("gemm_tile.cuh")


def split_k(pixels, tiles):
    """(chunk, splits) for a split-K grad_weight: chunk a multiple of MINUNET_GEMM_BK, splits*chunk >= pixels."""
    BK = GEMM_TILE.MINUNET_GEMM_BK
    splits = max(1, min(cdiv(pixels, SPLIT_K_MIN_CHUNK), cdiv(SPLIT_K_TARGET_BLOCKS, max(tiles, 1))))
    chunk = cdiv(cdiv(max(pixels, 1), splits), BK) * BK
    return chunk, cdiv(max(pixels, 1), chunk)


def launch_split_k(be, file, kernel, inputs, gw, dims, rows, cols, pixels, BM, BN):
    """Launch a split-K weight gradient, kernel(*inputs, out, *dims, chunk), with BM x BN tiles of the rows x cols
    gradient: block z sums the pixel slice [z*chunk, (z+1)*chunk) into partial[z], and gemm_tile.cuh's
    gemm_split_k_reduce (compiled into every file that includes it) adds the slices in a fixed order, so the
    result is deterministic. With one slice the kernel writes gw directly."""
    chunk, splits = split_k(pixels, cdiv(rows, BM) * cdiv(cols, BN))
    partial = gw if splits == 1 else be.empty((splits,) + gw.shape, gw.dtype)
    be.launch(file, kernel, gw.dtype, (cdiv(cols, BN), cdiv(rows, BM), splits), (GEMM_TILE.MINUNET_GEMM_THREADS,),
              inputs + (partial,) + dims + i32(chunk))
    if splits > 1:  # one thread per element of gw
        threads = GEMM_TILE.MINUNET_THREADS
        be.launch(file, "gemm_split_k_reduce", gw.dtype, (cdiv(gw.size, threads),), (threads,),
                  (partial, gw) + i32(gw.size, splits))
