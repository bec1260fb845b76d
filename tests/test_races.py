"""The race checker (MINUNET_SIM_RACECHECK=1) on tests/sim_kernels/races/: one kernel per kind of race.

These tests need ThreadSanitizer in the process from its start, so the normal suite runs them in a subprocess
(tests/test_racecheck_run.py: `python -m minunet.sim.preload python -m pytest tests/test_races.py ...`);
run directly, without it, they are skipped. Each race is invisible without the checker: the result in the
simulator's thread order is right (or the check below says what else shows it).
"""
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close_dtype
from minunet import paths
from minunet.backends import get_backend
from minunet.ops.launching import TF32_VERSIONS, all_versions
from minunet.sim import SimError, SimModule
from minunet.sim.build import find_kernels
from minunet.sim.launch import SimKernel
from minunet.sim.preload import tsan_loaded

pytestmark = pytest.mark.skipif(not tsan_loaded(), reason="needs ThreadSanitizer preloaded: "
                                "tests/test_racecheck_run.py runs this file under python -m minunet.sim.preload")

RACES = Path(__file__).parent / "sim_kernels" / "races"


def kernel(file, name, racecheck=True):
    return SimModule(RACES / file, defines={"MINUNET_REAL": "float"}, include_dirs=[paths.kernels_dir()],
                     racecheck=racecheck).get_function(name)


def line_of(file, text):
    """The line number of the first line of code in file containing text."""
    for number, line in enumerate((RACES / file).read_text().splitlines(), 1):
        if text in line and not line.lstrip().startswith("//"):
            return number
    raise AssertionError(f"{text!r} not in {file}")


def assert_race(error, kernel_name, array, file, lines):
    """The message names the kernel, the array, two threads (thread and block) and both source lines."""
    message = str(error.value)
    print(message)
    assert f"kernel '{kernel_name}': data race on" in message
    assert array in message
    threads = re.findall(r"thread \(\d+,\d+,\d+\) of block \(\d+,\d+,\d+\)", message)
    assert len(threads) == 2, message
    for line in lines:
        assert f"{file}:{line} " in message, message


def nan(n):
    return np.full(n, np.nan, np.float32)


@pytest.mark.parametrize("name, write, read", [
    ("rotate_by_a_warp", "tile[t] = x[t]", "out[t] = tile"),                    # after a __syncwarp
    ("read_after_a_shuffle", "if (t < warpSize) tile[t]", "out[t] = mine + tile"),  # after a __shfl_sync
])
def test_warp_functions_order_only_their_own_warp(rng, name, write, read):
    x = rng.standard_normal(64).astype(np.float32)
    with pytest.raises(SimError) as error:
        kernel("syncwarp_across_warps.cu", name)(1, 64, (x, nan(64)))
    file = "syncwarp_across_warps.cu"
    assert_race(error, name, "__shared__ array 'tile'", file, [line_of(file, write), line_of(file, read)])


def test_two_threads_write_one_element(rng):
    x = rng.standard_normal(64).astype(np.float32)
    out = nan(32)
    kernel("same_element_written_twice.cu", "halve_by_overwriting", racecheck=False)(1, 64, (x, out))
    np.testing.assert_array_equal(out, x[1::2])  # in thread order the odd thread always writes last
    with pytest.raises(SimError) as error:
        kernel("same_element_written_twice.cu", "halve_by_overwriting")(1, 64, (x, nan(32)))
    line = line_of("same_element_written_twice.cu", "out[t / 2] = x[t]")
    assert_race(error, "halve_by_overwriting", "global array 'out'", "same_element_written_twice.cu", [line])
    assert re.search(r"thread \(0,0,0\).*thread \(1,0,0\)", str(error.value))


def test_non_atomic_sum_races_and_atomic_sum_does_not(rng):
    x = rng.standard_normal(300).astype(np.float32)
    total = np.zeros(1, np.float32)
    kernel("nonatomic_sum.cu", "sum_without_atomic", racecheck=False)(3, 128, (x, total, np.int32(300)))
    np.testing.assert_allclose(total[0], x.sum(dtype=np.float64), rtol=1e-5)  # right in thread order
    with pytest.raises(SimError) as error:
        kernel("nonatomic_sum.cu", "sum_without_atomic")(3, 128, (x, np.zeros(1, np.float32), np.int32(300)))
    line = line_of("nonatomic_sum.cu", "total[0] += x[i]")
    assert_race(error, "sum_without_atomic", "global array 'total' (element [0])", "nonatomic_sum.cu", [line])
    total = np.zeros(1, np.float32)
    kernel("nonatomic_sum.cu", "sum_with_atomic")(3, 128, (x, total, np.int32(300)))
    np.testing.assert_allclose(total[0], x.sum(dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("shuffle_seed", [None, 1, 2])
def test_block_reads_what_the_previous_block_wrote(rng, shuffle_seed):
    x = rng.standard_normal(4 * 32).astype(np.float32)
    out = nan(4 * 32)
    kernel("reads_previous_block.cu", "prefix_of_blocks", racecheck=False)(4, 32, (x, out))
    np.testing.assert_allclose(out, np.cumsum(x.reshape(4, 32), axis=0).ravel(), rtol=1e-5)  # blocks in order
    mod = SimModule(RACES / "reads_previous_block.cu", defines={"MINUNET_REAL": "float"},
                    include_dirs=[paths.kernels_dir()], shuffle_seed=shuffle_seed, racecheck=True)
    with pytest.raises(SimError) as error:
        mod.get_function("prefix_of_blocks")(4, 32, (x, nan(4 * 32)))
    file = "reads_previous_block.cu"
    assert_race(error, "prefix_of_blocks", "global array 'out'", file,
                [line_of(file, "real before ="), line_of(file, "out[i] = before")])
    blocks = re.findall(r"of block \((\d+),0,0\)", str(error.value))
    assert blocks[0] != blocks[1], "the two threads are in different blocks"


def test_tile_reused_without_a_barrier(rng):
    x = rng.standard_normal(3 * 64).astype(np.float32)
    expect = np.concatenate([np.append(c[1:], c[-1]) for c in x.reshape(3, 64)])
    out = nan(3 * 64)
    kernel("missing_barrier.cu", "shift_chunks_left", racecheck=False)(1, 64, (x, out, np.int32(3)))
    np.testing.assert_array_equal(out, expect)  # right in thread order
    with pytest.raises(SimError) as error:
        kernel("missing_barrier.cu", "shift_chunks_left")(1, 64, (x, nan(3 * 64), np.int32(3)))
    file = "missing_barrier.cu"
    assert_race(error, "shift_chunks_left", "__shared__ array 'tile'", file,
                [line_of(file, "tile[t] = x[c * 64 + t]"), line_of(file, "out[c * 64 + t] = tile")])


def test_each_launch_reports_its_race_again(rng):
    """TSan reports a race once per pair of source lines by default; every launch must raise its SimError."""
    x = rng.standard_normal(64).astype(np.float32)
    f = kernel("same_element_written_twice.cu", "halve_by_overwriting")
    for _ in range(3):
        with pytest.raises(SimError, match="data race"):
            f(1, 64, (x, nan(32)))


def test_correct_kernels_after_a_race_run_clean(rng):
    """After a launch stopped at a race, a correct launch finds none: the host came after all the stopped launch
    did, and the next launch's threads come after the host (numpy may hand out the same memory again)."""
    x = rng.standard_normal(300).astype(np.float32)
    with pytest.raises(SimError):
        kernel("nonatomic_sum.cu", "sum_without_atomic")(3, 128, (x, np.zeros(1, np.float32), np.int32(300)))
    total = np.zeros(1, np.float32)
    kernel("nonatomic_sum.cu", "sum_with_atomic")(3, 128, (x, total, np.int32(300)))
    np.testing.assert_allclose(total[0], x.sum(dtype=np.float64), rtol=1e-5)


# ---- today's kernels: every one, every version, clean under the race checker --------------------------------
def test_every_kernel_of_every_file_runs_clean(rng, monkeypatch):
    """Each kernel of kernels/ launched at least once (float32: the dtype changes no index), several blocks
    per launch (races between blocks), against the numpy reference where the version is exact."""
    launched = set()
    call = SimKernel.__call__
    def recording_call(self, *args, **kwargs):
        launched.add(self.name)
        return call(self, *args, **kwargs)
    monkeypatch.setattr(SimKernel, "__call__", recording_call)
    sim, NP = get_backend("sim"), get_backend("numpy")
    assert sim.launcher.module("elementwise", np.float32).racecheck

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def check(op, args, version=None, **kwargs):
        out = getattr(sim, op)(*args, **({} if version is None else {"version": version}), **kwargs)
        ref = getattr(NP, op)(*args, **kwargs)
        for o, r in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,)):
            if TF32_VERSIONS.get({"conv3x3": "conv3x3_forward"}.get(op, op)) == version:
                assert np.isfinite(np.asarray(o)).all(), f"{op} v{version}"
            else:
                assert_close_dtype(np.asarray(o, np.float64), np.asarray(r, np.float64), np.float32,
                                   name=f"{op} v{version}", scale=30)

    x, w, b = randn(2, 3, 21, 39), randn(5, 3, 3, 3), randn(5)  # many pixels: the split-K grad_weight slices
    gy = randn(2, 5, 19, 37)
    for v in all_versions("conv3x3_forward"):
        check("conv3x3", (x, w, b, 0), v)
        check("conv3x3", (x, w, b, 1), v, relu=True)
    for v in all_versions("conv3x3_grad_input"):
        check("conv3x3_grad_input", (gy, w, 0, x.shape), v)
    for v in all_versions("conv3x3_grad_weight"):
        check("conv3x3_grad_weight", (x, gy, 0), v)
    xu, wu, bu, gyu = randn(2, 3, 9, 11), randn(3, 4, 2, 2), randn(4), randn(2, 4, 18, 22)
    for v in all_versions("up_conv2x2_forward"):
        check("up_conv2x2", (xu, wu, bu), v)
        check("up_conv2x2_grad_input", (gyu, wu), v)
        check("up_conv2x2_grad_weight", (xu, gyu), v)
    x1, w1, b1, gy1 = randn(2, 3, 19, 37), randn(2, 3, 1, 1), randn(2), randn(2, 2, 19, 37)
    for v in all_versions("conv1x1_forward"):
        check("conv1x1", (x1, w1, b1), v)
        check("conv1x1_grad_input", (gy1, w1), v)
        check("conv1x1_grad_weight", (x1, gy1), v)

    xm, gm = randn(2, 3, 18, 22), randn(2, 3, 9, 11)
    check("bias_grad", (randn(2, 5, 19, 37),))
    check("max_pool2x2", (xm,))
    check("max_pool2x2_grad", (gm, NP.max_pool2x2(xm)[1]))
    check("relu", (xm,))
    check("relu_grad", (xm, NP.relu(randn(2, 3, 18, 22))))
    check("crop", (xm, 2, 3, 11, 13))
    check("crop_grad", (randn(2, 3, 11, 13), xm.shape, 2, 3))
    check("concat", (xm, randn(2, 4, 18, 22)))
    check("concat_grad", (randn(2, 7, 18, 22), 3))
    check("dropout", (xm, 0.3, 7))
    check("dropout_grad", (xm, NP.dropout(xm, 0.3, 7)[1]))
    labels = rng.integers(0, 3, (2, 19, 37)).astype(np.int32)
    weights = rng.random((2, 19, 37)).astype(np.float32)
    check("softmax_cross_entropy", (randn(2, 3, 19, 37), labels, weights, -1, 0.5))
    param, grad, velocity = randn(3000), randn(3000), randn(3000)
    p_sim, v_sim, p_np, v_np = param.copy(), velocity.copy(), param.copy(), velocity.copy()
    sim.sgd_step(p_sim, grad, v_sim, 0.1, 0.9, 1e-4)
    NP.sgd_step(p_np, grad, v_np, 0.1, 0.9, 1e-4)
    assert_close_dtype(p_sim, p_np, np.float32, name="sgd param")

    every = {k for f in paths.kernels_dir().glob("*.cu") for k in find_kernels(f.read_text())}
    every |= {k for f in paths.kernels_dir().glob("*.cuh") for k in find_kernels(f.read_text())}
    assert every - launched == set(), f"kernels never launched under the race checker: {sorted(every - launched)}"
