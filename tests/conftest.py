"""Shared test helpers: the closeness check (minunet/compare.py's, re-exported), device
parametrisation, seeded random data, sanitizer runs."""
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minunet import paths
from minunet.backends import cuda_available, get_backend
from minunet.backends.kernel_backend import KernelBackend
from minunet.compare import assert_close, assert_close_dtype  # noqa: F401 (the tests import them from here)
from minunet.sim import SimLauncher

# Kernel devices compared against the reference (minunet/reference.py). cuda is always listed and skipped
# without a GPU, so the same tests run unchanged on a GPU machine.
KERNEL_DEVICES = ["sim", pytest.param("cuda", marks=pytest.mark.gpu)]
DTYPES = [np.float32, np.float64]


@functools.lru_cache(maxsize=None)
def sim_gpu_math_backend():
    """The sim device compiled for GPU arithmetic: FMA contraction and flush-to-zero, as CuPy compiles."""
    return KernelBackend(SimLauncher(gpu_math=True))


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):  # not `"gpu" in item.keywords`: that matches a folder named gpu too
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=KERNEL_DEVICES)
def backend(request):
    return get_backend(request.param)


@pytest.fixture(params=KERNEL_DEVICES + ["sim-gpu-math"])
def every_backend(request):
    """The kernel devices, and the sim with GPU arithmetic (fused multiply-adds, flush-to-zero): the
    tolerances must hold for both roundings."""
    return sim_gpu_math_backend() if request.param == "sim-gpu-math" else get_backend(request.param)


def randn(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def as_float64(*arrays):
    """float64 copies of the arrays (None stays None): the inputs of minunet.reference, the ground truth."""
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def terms_scale(terms):
    """Widen atol for sums of `terms` products of unit-sized numbers (rounding grows about like sqrt)."""
    return max(1.0, float(np.sqrt(terms)))


def assert_adjoint(lhs, rhs, what):
    """<op x, gy> == <x, op^T gy> to 1e-10 (float64): a backward op is the exact transpose of its forward."""
    lhs, rhs = float(lhs), float(rhs)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), f"{what}: <op x, gy> = {lhs!r} but <x, op^T gy> = {rhs!r}"


def assert_outputs_keep(dtype, outs):
    """Every output of {op name: array} has the inputs' dtype and is C-contiguous."""
    for op, out in outs.items():
        assert out.dtype == dtype, f"{op}: dtype {out.dtype}, expected {np.dtype(dtype)}"
        assert out.flags.c_contiguous, f"{op}: output is not C-contiguous"


def on(device, *arrays):
    """The backend of device and the arrays moved onto it."""
    backend = get_backend(device)
    return backend, [backend.asarray(a) for a in arrays]


def run(backend, method, *arrays, **kwargs):
    """backend.method(*arrays, **kwargs) with the arrays moved to the device and the one result back."""
    out = getattr(backend, method)(*[a if a is None or np.isscalar(a) or isinstance(a, tuple) else backend.asarray(a)
                                     for a in arrays], **kwargs)
    return backend.to_numpy(out)


def run_sanitized(script, timeout=300, cache_dir=None):
    """Run Python source in a subprocess with MINUNET_SIM_SANITIZE=1 and AddressSanitizer preloaded (ASan
    ends the process at its first report); skips where g++ has no ASan runtime. Sanitizer builds have cache
    keys of their own, so the usual cache serves (cache_dir: another, for kernels written by the test)."""
    libasan = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not shutil.which("g++") or not os.path.isabs(libasan):
        pytest.skip("no AddressSanitizer runtime for g++")
    env = dict(os.environ, MINUNET_SIM_SANITIZE="1", MINUNET_SIM_RACECHECK="0", LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0",
               UBSAN_OPTIONS="print_stacktrace=1",
               MINUNET_CACHE_DIR=str(cache_dir or paths.cache_dir()),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def launch_census(dtypes=(np.float32, np.float64)):
    """{(stem, kernel, dtype name): the largest block, in threads, the backends launch it with}: every
    convolution op at every version, and a small U-Net's training step for the other ops, on the sim."""
    import minunet as mu
    import minunet.functional as F
    from minunet.ops import launching
    from minunet.nvrtc_options import real_name

    census = {}
    launch = KernelBackend.launch

    def recording(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        key = (stem, kernel, real_name(dtype))
        census[key] = max(census.get(key, 0), int(np.prod(block)))
        return launch(self, stem, kernel, dtype, grid, block, args, shared_mem)

    sim, rng = get_backend("sim"), np.random.default_rng(0)
    KernelBackend.launch = recording
    try:
        for dtype in dtypes:
            x, b, gy = (sim.asarray(rng.standard_normal(s).astype(dtype)) for s in [(1, 3, 6, 6), (4,), (1, 4, 6, 6)])
            w3, w1 = (sim.asarray(rng.standard_normal(s).astype(dtype)) for s in [(4, 3, 3, 3), (4, 3, 1, 1)])
            wu, gyu = (sim.asarray(rng.standard_normal(s).astype(dtype)) for s in [(3, 4, 2, 2), (1, 4, 12, 12)])
            calls = {"conv3x3_forward": lambda v: sim.conv3x3(x, w3, b, 1, version=v),
                     "conv3x3_grad_input": lambda v: sim.conv3x3_grad_input(gy, w3, 1, x.shape, version=v),
                     "conv3x3_grad_weight": lambda v: sim.conv3x3_grad_weight(x, gy, 1, version=v),
                     "up_conv2x2_forward": lambda v: sim.up_conv2x2(x, wu, b, version=v),
                     "up_conv2x2_grad_input": lambda v: sim.up_conv2x2_grad_input(gyu, wu, version=v),
                     "up_conv2x2_grad_weight": lambda v: sim.up_conv2x2_grad_weight(x, gyu, version=v),
                     "conv1x1_forward": lambda v: sim.conv1x1(x, w1, b, version=v),
                     "conv1x1_grad_input": lambda v: sim.conv1x1_grad_input(gy, w1, version=v),
                     "conv1x1_grad_weight": lambda v: sim.conv1x1_grad_weight(x, gy, version=v)}
            for op, call in calls.items():
                for v in launching.all_versions(op):
                    if not (launching.TF32_VERSIONS.get(op) == v and dtype != np.float32):
                        call(v)
        net = mu.UNet(depth=2, base_channels=4, device="sim", dropout=0.5)
        image = mu.Tensor(rng.random((1, 1, 44, 44)).astype(np.float32), device="sim")
        logits = net(image)
        labels = mu.Tensor(rng.integers(0, 2, (1,) + logits.shape[2:]).astype(np.int32), device="sim")
        F.weighted_softmax_cross_entropy(logits, labels).backward()
        mu.optim.SGD(net.parameters(), lr=0.01, momentum=0.9).step()
    finally:
        KernelBackend.launch = launch
    return census
