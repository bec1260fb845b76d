"""The simulator enforces what a GPU enforces (issue #11): one kernel per bug kind in tests/sim_kernels/limits/.

Each bug is reported in the mode ARCHITECTURE.md names for it: launch limits, writes past dynamic shared
memory and the poison of uninitialised shared memory in every mode; accesses past dynamic shared memory
or past a shared array, misaligned vector loads, signed overflow and bad shifts under
MINUNET_SIM_SANITIZE=1 (AddressSanitizer and UBSan, whose first report ends the process: run in a
subprocess with libasan preloaded); fused multiply-adds and flush-to-zero under MINUNET_SIM_GPU_MATH=1.
Without its check, each test here fails. Registers x threads, which only NVRTC knows: tests/test_nvrtc.py.
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_sanitized
from minunet import paths
from minunet.backends import get_backend
from minunet.backends.kernel_backend import KernelBackend
from minunet.backends.launch_limits import LaunchLimitError
from minunet.sim import SimError, SimLauncher, SimModule
from minunet.sim.build import cpu_has_fma

LIMITS = Path(__file__).parent / "sim_kernels" / "limits"
REAL = {np.float32: "float", np.float64: "double"}


def kernel(file, name, dtype=np.float32, max_dynamic_shared=None, **options):
    return SimModule(LIMITS / file, defines={"MINUNET_REAL": REAL[dtype]}, include_dirs=[paths.kernels_dir()],
                     **options).get_function(name, max_dynamic_shared)


def nan_array(shape, dtype):
    return SimLauncher().empty(shape, dtype)


# ---- launch limits: every mode, the cuda launcher's checks (launch_limits.py) -------------------------------
def test_static_plus_dynamic_shared_memory_over_48_kb_needs_the_opt_in():
    f = kernel("shared_memory_limit.cu", "static_and_dynamic")
    assert f.attributes["shared_size_bytes"] == 40 * 1024  # the helper's array, reached through the call
    assert kernel("shared_memory_limit.cu", "dynamic_only").attributes["shared_size_bytes"] == 0
    out = nan_array(64, np.float32)
    f(1, 64, (out,), shared_mem=8 * 1024)  # 40 + 8 KB: fits
    assert not np.isnan(out).any()
    with pytest.raises(LaunchLimitError, match=r"static_and_dynamic': 40960 B static \+ 8196 B dynamic shared memory "
                                               r"= 49156 B per block, over the 49152 B .* max_dynamic_shared=8196"):
        f(1, 64, (out,), shared_mem=8 * 1024 + 4)


def test_the_opt_in_allows_more_and_bounds_the_launch():
    f = kernel("shared_memory_limit.cu", "dynamic_only", max_dynamic_shared=100 * 1024)
    out = nan_array(64, np.float32)
    f(1, 64, (out,), shared_mem=100 * 1024)
    np.testing.assert_array_equal(out, (np.arange(64) + 1) % 64)
    with pytest.raises(LaunchLimitError, match="over the max_dynamic_shared=102400 B this function opted in to"):
        f(1, 64, (out,), shared_mem=100 * 1024 + 4)
    with pytest.raises(LaunchLimitError, match="max_dynamic_shared=200000 B plus its 40960 B of static shared memory "
                                               "exceeds the 232448 B"):
        kernel("shared_memory_limit.cu", "static_and_dynamic", max_dynamic_shared=200000)
    launcher = SimLauncher()  # the launcher contract: the opt-in is an argument of function(), as on cuda
    g = launcher.function("elementwise", "bias_grad_v1", np.float32, max_dynamic_shared=64 * 1024)
    assert g.max_dynamic_shared == 64 * 1024 and launcher.function("elementwise", "bias_grad_v1", np.float32) is not g


def test_static_shared_memory_over_48_kb_is_refused():
    for opt_in in (None, 100 * 1024):  # no opt-in helps: ptxas refuses to compile it
        with pytest.raises(LaunchLimitError, match="too_much_static': 53248 B of static shared memory .* exceed the "
                                                   "49152 B any GPU compiles"):
            kernel("over_static_limit.cu", "too_much_static", max_dynamic_shared=opt_in)


def test_a_block_over_the_launch_bounds_is_refused():
    out = nan_array(256, np.float32)
    kernel("launch_bounds.cu", "bounded")(2, 128, (out,))
    assert kernel("launch_bounds.cu", "bounded").attributes["max_threads_per_block"] == 128
    with pytest.raises(LaunchLimitError, match=r"bounded': block \(129, 1, 1\) has 129 threads, but as compiled it "
                                               r"can run at most 128 per block \(its __launch_bounds__\)"):
        kernel("launch_bounds.cu", "bounded")(1, 129, (out,))
    kernel("launch_bounds.cu", "unbounded")(1, 256, (out,))  # no bounds: up to 1024


# ---- dynamic shared memory is exactly shared_mem bytes: every mode (writes), sanitize (reads, lines) -------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_write_past_the_dynamic_shared_memory_is_an_error(rng, dtype):
    f = kernel("dynamic_shared_overrun.cu", "forward_difference", dtype)
    x = rng.standard_normal(100).astype(dtype)
    out = nan_array(x.size, dtype)
    itemsize = np.dtype(dtype).itemsize
    f(2, 64, (x, out, np.int32(100)), shared_mem=65 * itemsize)  # the block's 64 elements and the halo
    np.testing.assert_array_equal(out, np.diff(np.concatenate([x, np.zeros(1, dtype)])))
    with pytest.raises(SimError, match=rf"forward_difference' wrote past the {64 * itemsize} bytes of "
                                       rf"dynamic shared memory .*extern __shared__ staged, byte {64 * itemsize}\b"):
        f(2, 64, (x, out, np.int32(100)), shared_mem=64 * itemsize)


@pytest.mark.parametrize("op", ["bias_grad", "softmax_cross_entropy"])
def test_todays_kernels_launched_with_half_their_dynamic_shared_memory_fail(monkeypatch, rng, op):
    launch = KernelBackend.launch

    def halved(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        return launch(self, stem, kernel, dtype, grid, block, args, shared_mem // 2)

    sim = get_backend("sim")
    x = sim.asarray(rng.standard_normal((2, 3, 5, 7)).astype(np.float32))
    labels = sim.asarray(rng.integers(0, 3, (2, 5, 7)).astype(np.int32))
    run = {"bias_grad": lambda: sim.bias_grad(x),
           "softmax_cross_entropy": lambda: sim.softmax_cross_entropy(x, labels, None, -1, 1.0)}[op]
    run()  # as the backend launches it: fine
    monkeypatch.setattr(KernelBackend, "launch", halved)
    with pytest.raises(SimError, match=r"wrote past the \d+ bytes of dynamic shared memory"):
        run()


# ---- uninitialised shared memory: the poison survives fmax and integer compares, every mode --------------
def test_uninitialised_shared_int_shows_as_int_max(rng):
    x = rng.integers(0, 1000, 128).astype(np.int32)
    out = nan_array(2, np.int32)
    kernel("uninitialised_shared.cu", "int_max_without_init")(2, 64, (x, out))
    assert (out == 2**31 - 1).all(), f"expected the poison INT_MAX, got {out} (true maxima {x.reshape(2, 64).max(1)})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uninitialised_shared_float_survives_fmax(rng, dtype):
    x = rng.standard_normal(128).astype(dtype)
    out = np.zeros(2, dtype)
    kernel("uninitialised_shared.cu", "fmax_without_init", dtype)(2, 64, (x, out))
    assert np.isnan(out).all(), f"fmax dropped the poison: got {out} (true maxima {x.reshape(2, 64).max(1)})"


# ---- MINUNET_SIM_SANITIZE=1: AddressSanitizer and UBSan, in a subprocess --------------------------------
SCRIPT_START = f"""import numpy as np
from minunet import paths
from minunet.sim import SimError, SimModule
def kernel(file, name):
    return SimModule({str(LIMITS)!r} + '/' + file, defines={{'MINUNET_REAL': 'float'}},
                     include_dirs=[paths.kernels_dir()]).get_function(name)
"""


# Each case: a clean launch, then the buggy one; the sanitizer's report names the bug and the line.
SANITIZER_CASES = {
    "dynamic_shared": ("assert kernel('shared_memory_limit.cu', 'dynamic_only').attributes['shared_size_bytes'] == 0\n"
                       "f = kernel('dynamic_shared_overrun.cu', 'forward_difference')\n"
                       "x = np.ones(64, np.float32); out = np.zeros(64, np.float32)\n"
                       "f(1, 64, (x, out, np.int32(64)), shared_mem=260); print('clean launch: fine', flush=True)\n"
                       "f(1, 64, (x, out, np.int32(64)), shared_mem=256)\n",
                       "AddressSanitizer: use-after-poison", "dynamic_shared_overrun.cu:10"),
    "shared_array": ("f = kernel('shared_array_overrun.cu', 'write_past_shared_array')\n"
                     "out = np.zeros(32, np.float32)\n"
                     "f(1, 32, (out, np.int32(0))); print('clean launch: fine', flush=True)\n"
                     "f(1, 32, (out, np.int32(1)))\n",
                     "index 32 out of bounds for type 'float [32]'", "shared_array_overrun.cu:9"),
    "shared_array_pointer": ("f = kernel('shared_array_overrun.cu', 'write_past_through_pointer')\n"
                             "out = np.zeros(32, np.float32)\n"
                             "f(1, 32, (out, np.int32(0))); print('clean launch: fine', flush=True)\n"
                             "f(1, 32, (out, np.int32(1)))\n",
                             "AddressSanitizer: global-buffer-overflow", "shared_array_overrun.cu:15"),
    "misaligned_vector": ("f = kernel('misaligned_vector.cu', 'load_float4')\n"
                          "x = np.arange(64, dtype=np.float32); out = np.zeros(8, np.float32)\n"
                          "f(1, 4, (x, out, np.int32(0))); print('clean launch: fine', flush=True)\n"
                          "f(1, 4, (x, out, np.int32(1)))\n",
                          "misaligned address", "misaligned_vector.cu:3"),
    "signed_overflow": ("f = kernel('integer_overflow.cu', 'overflowing_index')\n"
                        "x = np.arange(8, dtype=np.float32); out = np.zeros(8, np.float32)\n"
                        "f(2, 4, (x, out, np.int32(8))); print('clean launch: fine', flush=True)\n"
                        "f(2, 4, (x, out, np.int32(2**30 + 2**29)))\n",
                        "signed integer overflow", "integer_overflow.cu:3"),
    "shift": ("f = kernel('integer_overflow.cu', 'shift_by_width')\n"
              "bits = np.zeros(4, np.uint32)\n"
              "f(1, 3, (bits, np.int32(29))); print('clean launch: fine', flush=True)\n"
              "f(1, 4, (bits, np.int32(29)))\n",
              "shift exponent 32 is too large", "integer_overflow.cu:8"),
}


@pytest.mark.parametrize("case", list(SANITIZER_CASES))
def test_sanitizer_reports_the_bug_at_its_line(case):
    launch, report, line = SANITIZER_CASES[case]
    result = run_sanitized(SCRIPT_START + launch)
    assert "clean launch: fine" in result.stdout, result.stderr[-3000:]
    kernel_name = re.search(r"f = kernel\('[^']+', '(\w+)'\)", launch).group(1)
    assert result.returncode != 0 and report in result.stderr and line in result.stderr, result.stderr[-3000:]
    assert f"in {kernel_name} " in result.stderr, result.stderr[-3000:]  # the stack trace names the kernel


def test_todays_kernels_run_clean_under_the_sanitizers():
    """Every kernel the backends launch (each conv version, a U-Net training step), float32, under
    AddressSanitizer and UBSan: no finding, no SimError."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "import numpy as np\nfrom conftest import launch_census\n"
              "print(len(launch_census((np.float32,))), 'kernels ran clean', flush=True)\n")
    result = run_sanitized(script, timeout=900)
    assert result.returncode == 0 and "kernels ran clean" in result.stdout, result.stderr[-3000:]


# ---- MINUNET_SIM_GPU_MATH=1: fused multiply-adds and flush-to-zero, as CuPy compiles ---------------------
def test_gpu_arithmetic_fuses_multiply_adds_and_flushes_float_denormals():
    # a*b is not exact in float: a fused multiply-subtract of c = fl(a*b) gives the rounding error, not 0.
    a = np.float32(1 + 2**-12) * np.ones(4, np.float32)
    b = np.float32(1 - 2**-13) * np.ones(4, np.float32)
    c = a * b
    tiny = np.full(4, np.finfo(np.float32).tiny, np.float32)  # smallest normal float
    results = {}
    for gpu_math in (False, True):
        product, scaled = np.full(4, np.nan, np.float32), np.full(4, np.nan, np.float32)
        kernel("gpu_arithmetic.cu", "multiply_subtract", gpu_math=gpu_math)(1, 4, (a, b, c, product))
        kernel("gpu_arithmetic.cu", "scale_float", gpu_math=gpu_math)(1, 4, (tiny, np.float32(0.5), scaled))
        results[gpu_math] = product, scaled
    exact_error = np.float32(np.float64(a[0]) * np.float64(b[0]) - np.float64(c[0]))
    assert exact_error != 0
    np.testing.assert_array_equal(results[False][0], 0)             # the CPU's default: no contraction
    np.testing.assert_array_equal(results[False][1], tiny * 0.5)    # ... and denormals kept
    np.testing.assert_array_equal(results[True][1], 0)              # GPU: flushed to zero
    if cpu_has_fma():
        np.testing.assert_array_equal(results[True][0], exact_error)  # GPU: one fused rounding


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the FMA flag is an x86-64 question")
def test_gpu_arithmetic_without_fma_instructions_warns_and_does_not_fuse(monkeypatch):
    from minunet.sim import build
    monkeypatch.setattr(build, "cpu_has_fma", lambda: False)
    with pytest.warns(UserWarning, match="no FMA instructions, so multiply-adds are not fused"):
        flags = build.gpu_math_flags()
    assert "-mfma" not in flags and "-DMINUNET_SIM_GPU_MATH=1" in flags  # flush-to-zero still on
