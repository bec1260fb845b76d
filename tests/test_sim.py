"""The sim device's simulator: its kernels run right, and its bug reports fire.

Kernels under tests/sim_kernels/: basics.cu (correct kernels, built for float and double) and bugs.cu
(each kernel has one bug the simulator must report); fiber_check.cpp checks the fiber switch on its own,
natively and for aarch64 under qemu.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_sanitized
from minunet import paths
from minunet.sim import SimError, SimLauncher, SimModule
from minunet.sim.build import SIM_DIR, build_library, compiler

KERNELS = Path(__file__).parent / "sim_kernels"
REAL = {np.float32: "float", np.float64: "double"}
SEEDS = [1, 2, 3]


def module(name, dtype=np.float32, shuffle_seed=None, racecheck=None):
    return SimModule(KERNELS / name, defines={"MINUNET_REAL": REAL[dtype]}, include_dirs=[paths.kernels_dir()],
                     shuffle_seed=shuffle_seed, racecheck=racecheck)


def nan_array(shape, dtype):
    return SimLauncher().empty(shape, dtype)


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["float32", "float64"])
def basics(request):
    return request.param, module("basics.cu", request.param)


@pytest.fixture(scope="module")
def bugs():
    return module("bugs.cu")


def block_sum_reference(x, threads=256):
    """The kernel's tree order in NumPy, in x's dtype: the sums agree bit for bit."""
    blocks = -(-x.size // threads)
    s = np.zeros(blocks * threads, x.dtype)
    s[:x.size] = x
    s = s.reshape(blocks, threads)
    stride = threads // 2
    while stride:
        s[:, :stride] += s[:, stride:2 * stride]
        stride //= 2
    return s[:, 0]


# ---- correct kernels --------------------------------------------------------------------------------------
def test_vector_add_partial_last_block(basics, rng):
    dtype, mod = basics
    n = 1000  # not a multiple of the block
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    out = nan_array(n, dtype)
    mod.get_function("vector_add")((8, 1, 1), (128, 1, 1), (a, b, out, np.int32(n)))
    np.testing.assert_array_equal(out, a + b)


def test_unwritten_output_stays_nan(basics, rng):
    dtype, mod = basics
    n = 1000
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    out = nan_array(n, dtype)
    mod.get_function("vector_add")(7, 128, (a, b, out, np.int32(n)))  # one block short: 896 elements
    np.testing.assert_array_equal(out[:896], (a + b)[:896])
    assert np.isnan(out[896:]).all()


@pytest.mark.parametrize("n", [1, 256, 1000, 4097])
def test_block_sum_matches_tree_order_exactly(basics, rng, n):
    dtype, mod = basics
    x = rng.standard_normal(n).astype(dtype)
    blocks = -(-n // 256)
    out = nan_array(blocks, dtype)
    mod.get_function("block_sum")(blocks, 256, (x, out, np.int32(n)))
    np.testing.assert_array_equal(out, block_sum_reference(x))


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_kernels_pass_in_shuffled_order(rng, seed):
    mod = module("basics.cu", shuffle_seed=seed)
    x = rng.standard_normal(3000).astype(np.float32)
    out = nan_array(12, np.float32)
    mod.get_function("block_sum")(12, 256, (x, out, np.int32(3000)))
    np.testing.assert_array_equal(out, block_sum_reference(x))
    y = nan_array(512, np.float32)
    mod.get_function("shift_right")(4, 128, (x[:512].copy(), y))
    expect = np.concatenate([np.concatenate([[b[0]], b[:-1]]) for b in x[:512].reshape(4, 128)])
    np.testing.assert_array_equal(y, expect)


def test_coordinates_3d_grid_and_block():
    mod = module("basics.cu")
    grid, block = (3, 2, 2), (4, 2, 3)
    dims = [g * b for g, b in zip(grid, block)]
    out = nan_array((dims[2], dims[1], dims[0], 4), np.int32)
    mod.get_function("coordinates")(grid, block, (out,))
    z, y, x = np.meshgrid(*[np.arange(d) for d in dims[::-1]], indexing="ij")
    code = lambda a, b, c: a + 10 * b + 100 * c
    np.testing.assert_array_equal(out[..., 0], code(x % 4, y % 2, z % 3))
    np.testing.assert_array_equal(out[..., 1], code(x // 4, y // 2, z // 3))
    assert (out[..., 2] == code(*block)).all() and (out[..., 3] == code(*grid)).all()


def shuffle_reference(threads, src, delta, lane_mask, width):
    """CUDA's documented semantics of the shuffles, per thread; values are 1 + linear thread id."""
    out = np.zeros((threads, 6))
    for t in range(threads):
        lane, base = t % 32, t - t % 32
        group = lane // width * width
        up = lane - delta if lane % width - delta >= 0 else lane
        down = lane + delta if lane % width + delta < width else lane
        xor = lane ^ lane_mask
        xor = lane if xor // width > lane // width else xor  # later groups give the own value
        full_down = lane + delta if lane + delta < 32 else lane
        out[t, :5] = [1 + base + group + src % width, 1 + base + up, 1 + base + down, 1 + base + xor,
                      base + full_down]
        out[t, 5] = (1 + base + (lane ^ lane_mask)) * 0.5
    return out


@pytest.mark.parametrize("width,src,delta,lane_mask", [(32, 5, 3, 9), (8, 13, 3, 6), (4, 1, 2, 5), (16, 31, 1, 17)])
def test_warp_shuffles_match_cuda(basics, width, src, delta, lane_mask):
    dtype, mod = basics
    block = (8, 4, 2)  # 64 threads: two warps, linear id = x + 8*(y + 4*z)
    out = nan_array((64, 6), dtype)
    mod.get_function("warp_shuffles")(1, block, (out, np.int32(src), np.int32(delta), np.int32(lane_mask),
                                                 np.int32(width)))
    np.testing.assert_array_equal(out, shuffle_reference(64, src, delta, lane_mask, width))


def test_warp_sum(rng):
    mod = module("basics.cu", np.float64)
    x = rng.integers(-50, 50, 256).astype(np.float64)  # integers: any summation order is exact
    out = nan_array(8, np.float64)
    mod.get_function("warp_sum")(2, 128, (x, out))
    np.testing.assert_array_equal(out, x.reshape(8, 32).sum(1))


def test_warp_votes():
    mod = module("basics.cu")
    x = -np.ones(96, np.float32)
    x[[0, 5, 31, 40]] = 1.0  # warp 0: lanes 0, 5, 31; warp 1: lane 8; warp 2: all positive
    x[64:] = 2.0
    out = SimLauncher().empty((96, 3), np.uint32)
    mod.get_function("warp_votes")(1, 96, (x, out))
    expect = [(1 << 0) | (1 << 5) | (1 << 31), 1 << 8, 0xFFFFFFFF]
    for warp in range(3):
        rows = out[32 * warp:32 * warp + 32]
        assert (rows[:, 0] == expect[warp]).all() and (rows[:, 1] == 1).all()
        assert (rows[:, 2] == (warp == 2)).all()


def test_atomics(basics, rng):
    dtype, mod = basics
    n = 1000
    x = rng.integers(-8, 8, n).astype(dtype)
    counts = np.array([0, -1, 1 << 30, -1, 0], np.int32)
    total = np.zeros(1, dtype)
    bits = np.zeros(2, np.uint32)
    mod.get_function("atomics")(4, 256, (x, counts, total, bits, np.int32(n)), )
    assert counts[0] == n and counts[1] == n - 1 and counts[2] == 0 and counts[4] == 7
    assert 0 <= counts[3] < n
    assert total[0] == x.sum() and bits[0] == 0xFFFFFFFF and bits[1] == 2 * n


def test_dynamic_shared_memory(basics, rng):
    dtype, mod = basics
    x = rng.standard_normal(3 * 96).astype(dtype)
    out = nan_array(x.size, dtype)
    mod.get_function("reverse_dynamic")(3, 96, (x, out), shared_mem=96 * np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(out, x.reshape(3, 96)[:, ::-1].ravel())


def test_shared_memory_is_poisoned_every_block(basics):
    dtype, mod = basics
    out = nan_array(4 * 64, dtype)
    mod.get_function("static_shared_reuse")(4, 64, (out,))
    np.testing.assert_array_equal(out[:64], np.arange(1, 65))
    assert np.isnan(out[64:]).all(), "blocks 1-3 read block 0's tile: static shared memory was not poisoned"
    out = nan_array(32, dtype)
    mod.get_function("read_unwritten_dynamic")(1, 32, (out,), shared_mem=32 * np.dtype(dtype).itemsize)
    assert np.isnan(out).all()


def test_scalar_parameters(basics):
    dtype, mod = basics
    out = nan_array(6, dtype)
    f = np.float32(2.0)
    mod.get_function("scalar_types")(1, 1, (out, dtype(1.5), f, np.float64(-3.25), np.int32(-7), np.uint32(9)))
    np.testing.assert_array_equal(out[:5], [1.5, 2.0, -3.25, -7, 9])
    expect = np.float32(np.sqrt(f) + 1 / np.sqrt(f) + 2 * np.exp(f) + np.log(f) + 2 + 3 + 2)
    np.testing.assert_allclose(out[5], expect, rtol=1e-6)


def test_printf(capfd):
    module("basics.cu").get_function("say_hello")(1, 32, (np.int32(42),))
    assert "hello from the simulator: 42" in capfd.readouterr().out


def test_ucontext_fibers_give_the_same_result(monkeypatch, rng):
    monkeypatch.setenv("MINUNET_SIM_FIBERS", "ucontext")
    x = rng.standard_normal(700).astype(np.float32)
    out = nan_array(3, np.float32)
    module("basics.cu", shuffle_seed=5).get_function("block_sum")(3, 256, (x, out, np.int32(700)))
    np.testing.assert_array_equal(out, block_sum_reference(x))


# ---- the launcher contract ----------------------------------------------------------------------------
def test_launcher_contract():
    launcher = SimLauncher()
    assert launcher.name == "sim" and launcher.xp is np
    a = np.arange(12.0).reshape(3, 4).T
    b = launcher.asarray(a)
    assert b.flags.c_contiguous and np.shares_memory(a, b) is False and (b == a).all()
    assert np.isnan(launcher.empty((2, 3), np.float32)).all()
    assert (launcher.empty(5, np.int32) == -1).all() and (launcher.empty(5, np.uint8) == 255).all()
    with pytest.raises(ValueError, match="float32 or float64"):
        launcher.function("conv3x3", "conv3x3_forward_v1", np.int32)


def test_cache_key_follows_included_header(tmp_path, monkeypatch):
    monkeypatch.setenv("MINUNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "helper.cuh").write_text("#define HELPER_VALUE 3\n")
    (tmp_path / "uses_helper.cu").write_text('#include "helper.cuh"\n'
                                             'extern "C" __global__ void value(int* out) { out[0] = HELPER_VALUE; }\n')
    first, _ = build_library(tmp_path / "uses_helper.cu")
    assert build_library(tmp_path / "uses_helper.cu")[0] == first  # unchanged: cached
    (tmp_path / "helper.cuh").write_text("#define HELPER_VALUE 4\n")
    second, _ = build_library(tmp_path / "uses_helper.cu")
    assert second != first
    out = np.zeros(1, np.int32)
    SimModule(tmp_path / "uses_helper.cu").get_function("value")(1, 1, (out,))
    assert out[0] == 4


def test_a_kernel_defined_in_an_included_header_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("MINUNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "shared.cuh").write_text('#pragma once\n'
                                         'extern "C" __global__ void from_header(int* out) { out[0] = 7; }\n')
    (tmp_path / "main.cu").write_text('#include "shared.cuh"\n'
                                      'extern "C" __global__ void from_file(int* out) { out[0] = 8; }\n')
    _, kernels = build_library(tmp_path / "main.cu")
    assert set(kernels) == {"from_header", "from_file"}
    out = np.zeros(1, np.int32)
    SimModule(tmp_path / "main.cu").get_function("from_header")(1, 1, (out,))
    assert out[0] == 7


def test_unknown_kernel_name(bugs):
    with pytest.raises(ValueError, match="early_return"):
        bugs.get_function("no_such_kernel")


# ---- argument checks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["python_int", "float64_scalar", "noncontiguous", "wrong_dtype", "count",
                                  "read_only", "list"])
def test_wrong_arguments_are_type_errors(case):
    f = module("basics.cu", np.float64).get_function("vector_add")
    a, b, out, n = np.ones(8), np.ones(8), np.zeros(8), np.int32(8)
    args, match = {
        "python_int": ((a, b, out, 8), "parameter 'n' \\(int\\).*Python int"),
        "float64_scalar": ((a, b, out, np.float64(8)), "parameter 'n' \\(int\\) needs np.int32, got np.float64"),
        "noncontiguous": ((np.ones(16)[::2], b, out, n), "parameter 'a'.*C-contiguous"),
        "wrong_dtype": ((a, b.astype(np.float32), out, n), "parameter 'b' \\(const double\\*\\).*float64, got float32"),
        "count": ((a, b, out), "takes 4 arguments"),
        "read_only": ((a, b, np.broadcast_to(out, (8,)), n), "parameter 'out'.*read-only"),
        "list": ((a, [1.0] * 8, out, n), "parameter 'b'.*numpy array"),
    }[case]
    with pytest.raises(TypeError, match=match):
        f(1, 8, args)
    with pytest.raises(TypeError, match="needs np.float32, got np.float64"):
        module("basics.cu", np.float32).get_function("scalar_types")(
            1, 1, (np.zeros(6, np.float32), np.float32(1), np.float64(2), np.float64(3), np.int32(4), np.uint32(5)))


@pytest.mark.parametrize("grid,block,shared,match", [
    ((1,), (1025,), 0, "1024"), ((1,), (32, 32, 2), 0, "2048 threads"), ((0,), (32,), 0, "grid.x = 0"),
    ((-1, 1), (32,), 0, "grid.x = -1"), ((1,), (1, 1, 65), 0, "block.z"), ((1,), (32,), -1, "shared_mem"),
    ((1.5,), (32,), 0, "ints")])
def test_bad_launch_configuration(grid, block, shared, match):
    f = module("basics.cu").get_function("read_unwritten_dynamic")
    with pytest.raises(ValueError, match=match):
        f(grid, block, (np.zeros(2048, np.float32),), shared_mem=shared)


# ---- bugs the simulator reports ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_missing_sync_in_reduction_is_caught(rng, seed):
    x = rng.standard_normal(1000).astype(np.float32)
    out = nan_array(4, np.float32)
    f = module("bugs.cu", shuffle_seed=seed).get_function("block_sum_missing_sync")
    try:
        f(4, 256, (x, out, np.int32(1000)))
    except SimError:
        return
    assert not np.array_equal(out, block_sum_reference(x))


def test_missing_sync_hidden_in_order_shows_when_shuffled(rng):
    """The shuffled order on its own (without the race checker, which reports the bug before any result)."""
    x = rng.standard_normal(256).astype(np.float32)
    expect = np.concatenate([np.concatenate([[b[0]], b[:-1]]) for b in x.reshape(2, 128)])
    out = nan_array(256, np.float32)
    module("bugs.cu", racecheck=False).get_function("shift_right_missing_sync")(2, 128, (x, out))
    np.testing.assert_array_equal(out, expect)  # in thread order the bug is invisible...
    for seed in SEEDS:  # ...in a random order the neighbour has not written its value yet
        out = nan_array(256, np.float32)
        shuffled = module("bugs.cu", shuffle_seed=seed, racecheck=False)
        shuffled.get_function("shift_right_missing_sync")(2, 128, (x, out))
        assert np.isnan(out).any()


def test_syncwarp_orders_only_its_own_warp(rng):
    """Warps run ahead of each other between barriers: a __syncwarp standing in for a __syncthreads shows."""
    x = rng.standard_normal(64).astype(np.float32)
    races = module("races/syncwarp_across_warps.cu", racecheck=False)
    out = nan_array(64, np.float32)
    races.get_function("rotate_by_a_warp")(1, 64, (x, out))
    assert np.isnan(out[:32]).all()  # warp 0 ran to its end before warp 1 wrote its half
    out = nan_array(64, np.float32)
    races.get_function("copy_from_warp_0")(1, 64, (x, out))
    np.testing.assert_array_equal(out, np.tile(x[:32], 2))  # warp 0 ran first: right by luck...
    unlucky = 0
    for seed in range(1, 9):  # ...and when warp 1 runs first, its values are not there yet
        out = nan_array(64, np.float32)
        module("races/syncwarp_across_warps.cu", shuffle_seed=seed, racecheck=False).get_function(
            "copy_from_warp_0")(1, 64, (x, out))
        unlucky += bool(np.isnan(out[32:]).all())
    assert 0 < unlucky < 8, unlucky


def test_shuffle_from_environment(monkeypatch, rng):
    monkeypatch.setenv("MINUNET_SIM_SHUFFLE", "7")
    x = rng.standard_normal(128).astype(np.float32)
    out = nan_array(128, np.float32)
    module("bugs.cu", racecheck=False).get_function("shift_right_missing_sync")(1, 128, (x, out))
    assert np.isnan(out).any()
    monkeypatch.setenv("MINUNET_SIM_SHUFFLE", "seven")
    with pytest.raises(ValueError, match="MINUNET_SIM_SHUFFLE"):
        module("bugs.cu")


def test_early_return_before_barrier(bugs):
    out = nan_array(128, np.float32)
    with pytest.raises(SimError, match=r"early_return.*thread \(100,0,0\) of block \(0,0,0\) exited while "
                                       r"100 threads wait at __syncthreads at bugs.cu:\d+"):
        bugs.get_function("early_return")(1, 128, (out, np.int32(100)))
    bugs.get_function("early_return")(1, 128, (out, np.int32(128)))  # no thread leaves early: fine
    assert not np.isnan(out).any()


def test_divergent_barrier(bugs):
    with pytest.raises(SimError, match=r"different __syncthreads: 32 at bugs.cu:\d+ .* 32 elsewhere"):
        bugs.get_function("divergent_barrier")(1, 64, (nan_array(64, np.float32),))


def test_shuffle_with_an_exited_lane(bugs):
    """As on sm_70 and later the shuffle does not wait for lane 5, which has exited; reading it is the bug."""
    with pytest.raises(SimError, match=r"__shfl_down_sync at bugs.cu:\d+ in warp 0 of block \(0,0,0\): lane 4 reads "
                                       r"lane 5, which has exited"):
        bugs.get_function("shuffle_after_exit")(1, 32, (nan_array(32, np.float32),))


def test_failed_assert(bugs):
    with pytest.raises(SimError, match=r"assertion failed: threadIdx.x < 3 at bugs.cu:\d+ in thread \(3,0,0\)"):
        bugs.get_function("failed_assert")(1, 8, (nan_array(8, np.float32),))


@pytest.mark.parametrize("kernel,args,match", [
    ("write_far_out_of_bounds", lambda: (nan_array(4, np.float32), np.int32(1000)),
     r"crashed in thread \(0,0,0\) of block \(1,0,0\): SIGSEGV.*bugs.cu:\d+ in write_far_out_of_bounds"),
    ("stack_overflow", lambda: (nan_array(4, np.float32), np.int32(64 * 1024)), "stack overflow"),
    ("integer_divide_by_zero", lambda: (nan_array(4, np.int32), np.int32(0)),
     r"thread \(2,0,0\) of block \(0,0,0\): SIGFPE.*bugs.cu:\d+"),
])
def test_crash_is_reported_and_process_survives(bugs, rng, kernel, args, match):
    with pytest.raises(SimError, match=match):
        bugs.get_function(kernel)(2, 4, args())
    # The process and the simulator still work: run a correct kernel.
    x = rng.standard_normal(300).astype(np.float32)
    out = nan_array(2, np.float32)
    module("basics.cu").get_function("block_sum")(2, 256, (x, out, np.int32(300)))
    np.testing.assert_array_equal(out, block_sum_reference(x))


def test_sanitizer_build_reports_out_of_bounds(tmp_path):
    """MINUNET_SIM_SANITIZE=1: an out-of-bounds write that does not fault is reported at its source line (the
    bytes around the kernel's copy of an array are poisoned for AddressSanitizer, global_memory.h)."""
    (tmp_path / "off_by_one.cu").write_text(
        'extern "C" __global__ void off_by_one(float* out, int n) { out[threadIdx.x + n] = 1.0f; }\n')
    script = ("import numpy as np; from minunet.sim import SimModule\n"
              f"f = SimModule({str(tmp_path / 'off_by_one.cu')!r}).get_function('off_by_one')\n"
              "out = np.zeros(8, np.float32); f(1, 8, (out, np.int32(0))); print('in bounds: fine', flush=True)\n"
              "f(1, 8, (out, np.int32(1)))\n")
    result = run_sanitized(script, timeout=120, cache_dir=tmp_path / "cache")
    assert "in bounds: fine" in result.stdout, result.stderr[-2000:]
    assert result.returncode != 0
    assert "use-after-poison" in result.stderr and "off_by_one.cu:1" in result.stderr, result.stderr[-2000:]


# ---- the fiber switch on its own: natively, and for aarch64 under qemu -----------------------------------
FIBER_CHECK = KERNELS / "fiber_check.cpp"
AARCH64_TOOLS = ("aarch64-linux-gnu-g++", "qemu-aarch64-static")


def build_and_run_fiber_check(cxx, tmp_path, *flags, runner=()):
    exe = tmp_path / "fiber_check"
    subprocess.run([cxx, "-O2", "-ffp-contract=off", *flags, "-I", str(SIM_DIR), str(FIBER_CHECK), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    result = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "fibers ok" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("flags", [(), ("-DMINUNET_SIM_UCONTEXT=1",)], ids=["assembly", "ucontext"])
def test_fibers_keep_their_registers_and_an_aligned_stack(tmp_path, flags):
    build_and_run_fiber_check(compiler(), tmp_path, *flags)


@pytest.mark.skipif(not all(map(shutil.which, AARCH64_TOOLS)),
                    reason="needs aarch64-linux-gnu-g++ and qemu-aarch64-static (Debian packages g++-aarch64-linux-gnu "
                           "and qemu-user-static; .ci/run installs them)")
def test_the_aarch64_fiber_switch_under_qemu(tmp_path):
    # The assembly for aarch64 (fiber.h) on an emulated aarch64 machine: the only way it runs here.
    build_and_run_fiber_check(AARCH64_TOOLS[0], tmp_path, "-static", runner=(AARCH64_TOOLS[1],))
