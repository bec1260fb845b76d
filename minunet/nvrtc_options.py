"""The options every kernel file is compiled with: one function for the cuda launcher, which compiles at run
time through CuPy's RawModule, and for the GPU-less NVRTC check (nvrtc.py), so that what CI compiles is
what runs on a GPU; and the C name of an element type, which the simulator's builds are given too.
"""
import hashlib
import re
from pathlib import Path

import numpy as np

DTYPE_NAMES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def real_name(dtype) -> str:
    """'float' or 'double' from a NumPy float32/float64 dtype or from the C name itself."""
    if isinstance(dtype, str) and dtype in ("float", "double"):
        return dtype  # checked first: np.dtype("float") would be float64
    try:
        return DTYPE_NAMES[np.dtype(dtype)]
    except (TypeError, KeyError):
        raise ValueError(f"dtype must be float32 or float64 (or 'float'/'double'), got {dtype!r}") from None


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def source_hash(cu_path) -> str:
    """Hash of a .cu file and of the headers it includes (recursively) from its own folder.

    CuPy's kernel cache is keyed by the source text and the options; the headers are not in the source
    text, so their hash goes into the options, or an edit of common.cuh would reuse a stale cubin.
    """
    cu_path = Path(cu_path)
    digest = hashlib.sha256()
    seen, todo = set(), [cu_path]
    while todo:
        path = todo.pop(0)
        if path in seen or not path.is_file():
            continue  # a header from elsewhere (CUDA's, CuPy's) is not ours to hash
        seen.add(path)
        text = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + text + b"\0")
        todo += [cu_path.parent / name for name in _INCLUDE.findall(text.decode("utf-8", "replace"))]
    return digest.hexdigest()[:16]


def compile_options(cu_path, dtype, include_dirs=()) -> tuple:
    """minunet's NVRTC options for one kernel file and element type.
    include_dirs: more -I folders after the file's own (an exercise's file includes kernels/common.cuh)."""
    cu_path = Path(cu_path)
    return (f"-DMINUNET_REAL={real_name(dtype)}",
            f"-I{cu_path.parent}",
            *(f"-I{folder}" for folder in include_dirs),
            f"-DMINUNET_SOURCE_HASH={source_hash(cu_path)}")
