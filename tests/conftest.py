"""Shared test helpers: the closeness check, device parametrisation, seeded random data, sanitizer runs."""
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minunet.backends import cuda_available, get_backend
from minunet.backends.kernel_backend import KernelBackend
from minunet.sim import SimLauncher

# Kernel devices compared against the numpy reference. cuda is always listed and skipped without a GPU,
# so the same tests run unchanged on a GPU machine.
KERNEL_DEVICES = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
DTYPES = [np.float32, np.float64]

# Tolerances per dtype: float32 kernels differ from NumPy/BLAS by summation order, FMA and -ftz.
TOL = {np.dtype(np.float32): dict(atol=1e-5, rtol=1e-4), np.dtype(np.float64): dict(atol=1e-12, rtol=1e-10)}


@functools.lru_cache(maxsize=None)
def sim_gpu_math_backend():
    """The sim device compiled for GPU arithmetic: FMA contraction and flush-to-zero, as CuPy compiles."""
    return KernelBackend(SimLauncher(gpu_math=True))


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def assert_close(out, ref, atol, rtol, name="output"):
    """|out - ref| <= atol + rtol*|ref| everywhere; on failure name the worst element.

    NaN anywhere in out fails: kernels' outputs are poisoned with NaN, so a NaN is an element never written.
    """
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, f"{name}: shape {out.shape} != reference {ref.shape}"
    if out.size == 0:
        return
    nan = np.isnan(out) & ~np.isnan(ref)
    assert not nan.any(), (f"{name}: {int(nan.sum())} of {out.size} elements are NaN (never written?), "
                           f"first at {np.unravel_index(np.argmax(nan), out.shape)}")
    excess = np.abs(out - ref) - (atol + rtol * np.abs(ref))
    worst = np.unravel_index(np.argmax(excess), out.shape)
    assert excess[worst] <= 0, (f"{name}: {int((excess > 0).sum())} of {out.size} elements out of tolerance; "
                                f"worst at {worst}: got {out[worst]!r}, expected {ref[worst]!r} "
                                f"(atol={atol}, rtol={rtol})")


def assert_close_dtype(out, ref, dtype, name="output", scale=1.0):
    """assert_close with the tolerance of dtype; scale widens atol for sums over many terms."""
    tol = TOL[np.dtype(dtype)]
    assert_close(out, ref, atol=tol["atol"] * scale, rtol=tol["rtol"], name=name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def numpy_backend():
    return get_backend("numpy")


def run_sanitized(script, tmp_path, timeout=300):
    """Run Python source in a subprocess with MINUNET_SIM_SANITIZE=1 and AddressSanitizer preloaded (ASan
    ends the process at its first report); skips where g++ has no ASan runtime."""
    libasan = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not shutil.which("g++") or not os.path.isabs(libasan):
        pytest.skip("no AddressSanitizer runtime for g++")
    env = dict(os.environ, MINUNET_SIM_SANITIZE="1", LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0",
               UBSAN_OPTIONS="print_stacktrace=1",
               MINUNET_CACHE_DIR=os.environ.get("MINUNET_CACHE_DIR", str(tmp_path / "cache")),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
