"""The simulator names kernel bugs a GPU would show (issue #26): one kernel file per bug class in
tests/sim_kernels/gpu_faithful/, each bug beside a correct twin that runs clean.

- global_out_of_bounds.cu: global memory past either end of an argument array, in every mode (the runtime's
  copies of the arrays lie between guard pages, global_memory.h).
- warp_lanes.cu: a shuffle reading a lane that does not exist or does not take part, a lane calling with a mask
  that leaves it out, in every mode; a mask naming lanes that do not exist stays allowed, as on sm_70+.
- extern_shared_alias.cu: two extern __shared__ arrays used as separate buffers (on a GPU they start at the
  same byte): refused by name unless declared `// minunet: aliases`, and then one buffer, as on a GPU.
"""
from pathlib import Path

import numpy as np
import pytest

from minunet import paths
from minunet.backends import get_backend
from minunet.sim import SimError, SimLauncher, SimModule
from minunet.sim.build import shared_through_pointers
from minunet.sim.global_memory import Regions
from minunet.sim.preload import tsan_loaded
from conftest import launch_census, run_sanitized
from test_sim import KERNELS, REAL

FAITHFUL = KERNELS / "gpu_faithful"
# tests/test_racecheck_run.py runs this file under the race checker too, which excludes the initcheck mode
not_under_tsan = pytest.mark.skipif(tsan_loaded(), reason="the race checker excludes the initcheck and sanitize modes")


def module(file, dtype=np.float32, **options):
    return SimModule(FAITHFUL / file, defines={"MINUNET_REAL": REAL[dtype]}, include_dirs=[paths.kernels_dir()],
                     **options)


def nan_array(shape, dtype=np.float32):
    return SimLauncher().empty(shape, dtype)


# ---- global memory out of bounds: every mode ---------------------------------------------------------------
def launch_twice(f, *launch):
    """Two launches of one kernel function: the first guards the arrays' ends, the second their starts."""
    for _ in range(2):
        f(*launch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_read_past_the_end_of_a_global_array_is_named(rng, dtype):
    mod = module("global_out_of_bounds.cu", dtype)
    a = rng.standard_normal((4, 20)).astype(dtype)  # k = 20: the second tile of 16 is partial
    sums = nan_array(4, dtype)
    launch_twice(mod.get_function("tile_loader_checked"), 4, 16, (a, sums, np.int32(20)))
    np.testing.assert_allclose(sums, a.sum(1), rtol=1e-5)
    with pytest.raises(SimError, match=r"kernel 'tile_loader_reads_past_end': thread \(4,0,0\) of block \(3,0,0\) "
                                       rf"reads element 80, 1 past the end of global array 'a' \(argument 0, "
                                       rf"{np.dtype(dtype)} \(4, 20\)\) .*global_out_of_bounds.cu:15 "):
        mod.get_function("tile_loader_reads_past_end")(4, 16, (a, sums, np.int32(20)))


def test_a_read_before_the_start_of_a_global_array_is_named(rng):
    mod = module("global_out_of_bounds.cu")
    image = rng.standard_normal((6, 7)).astype(np.float32)
    out = nan_array(42)
    launch_twice(mod.get_function("stencil_checked"), 2, 32, (image, out, np.int32(6), np.int32(7)))
    padded = np.pad(image, ((1, 1), (0, 0)))
    np.testing.assert_array_equal(out, (padded[:-2] + padded[2:]).ravel())
    with pytest.raises(SimError, match=r"'stencil_reads_before_start': thread \(0,0,0\) of block \(0,0,0\) reads "
                                       r"element -7, 7 before the start of global array 'x' .*"
                                       r"global_out_of_bounds.cu:55 "):
        launch_twice(mod.get_function("stencil_reads_before_start"), 2, 32, (image, out, np.int32(6), np.int32(7)))


def ending_in_slack(values, dtype):
    """A copy of values whose end lies `itemsize` bytes past a 16-byte boundary: the simulator, keeping its address
    modulo 16, leaves 16 - itemsize bytes of slack between it and the guard page after it."""
    nbytes = len(values) * np.dtype(dtype).itemsize
    buffer = np.empty(nbytes + 32, np.uint8)
    start = (np.dtype(dtype).itemsize - buffer.ctypes.data - nbytes) % 16
    array = buffer[start:start + nbytes].view(dtype)
    array[:] = values
    return array


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_read_within_the_slack_past_the_end_reads_nan(rng, dtype):
    """The default mode: between an array's end and the guard page, where a read does not fault, the canary reads
    as NaN in a float or double element, so the result shows the read (the initcheck mode names it)."""
    mod = module("global_out_of_bounds.cu", dtype)
    x = ending_in_slack(rng.standard_normal(5), dtype)
    assert (x.ctypes.data + x.nbytes) % 16 == x.itemsize
    out = nan_array(5, dtype)
    mod.get_function("forward_difference_checked")(1, 32, (x, out, np.int32(5)))
    np.testing.assert_array_equal(out, np.append(np.diff(x), 0))
    mod.get_function("forward_difference_reads_past_end")(1, 32, (x, out, np.int32(5)))  # its first launch: the end
    np.testing.assert_array_equal(out[:4], np.diff(x))
    assert np.isnan(out[4]), f"x[5] read as {out[4] + x[4]!r}"


def test_a_write_before_the_start_is_seen_after_the_launch_and_at_its_line(rng):
    mod = module("global_out_of_bounds.cu")
    x = rng.standard_normal(100).astype(np.float32)
    out = nan_array(100)
    launch_twice(mod.get_function("difference_checked"), 4, 32, (x, out, np.int32(100)))
    np.testing.assert_array_equal(out, np.diff(x, prepend=np.float32(0)))
    f = mod.get_function("difference_writes_before_start")
    with pytest.raises(SimError, match=r"'difference_writes_before_start' wrote element -1, 1 before the start of "
                                       r"global array 'out' \(argument 1, float32 \(100,\)\) \(seen in its guard "
                                       r"bytes after the launch.*MINUNET_SIM_INITCHECK=1 names both"):
        f(4, 32, (x, out, np.int32(100)))  # the end is guarded: the stray write lands in the canary bytes
    with pytest.raises(SimError, match=r"thread \(0,0,0\) of block \(0,0,0\) writes element -1, 1 before the "
                                       r"start of global array 'out'.*global_out_of_bounds.cu:42 "):
        f(4, 32, (x, out, np.int32(100)))  # the start is guarded: it faults


def test_arguments_that_share_memory_stay_one_buffer_for_the_kernel(rng):
    """The runtime copies overlapping arguments as one region: an in-place launch sees its own writes."""
    f = SimModule(KERNELS / "basics.cu", defines={"MINUNET_REAL": "float"},
                  include_dirs=[paths.kernels_dir()]).get_function("vector_add")
    a, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    expect = a + b
    f(1, 64, (a, b, a, np.int32(64)))  # out is a
    np.testing.assert_array_equal(a, expect)
    x, y = np.arange(10, dtype=np.float32), np.zeros(3, np.float32)
    regions = Regions(f.params, (x[:8], x[2:], x[1:9], np.int32(8)))  # three views of one buffer: one region
    assert regions.spans == [[x.ctypes.data, 40, True]]
    assert [(name, offset) for _, name, _, offset, _ in regions.members] == [("a", 0), ("out", 4), ("b", 8)]
    regions = Regions(f.params, (x[:3], y, x[3:6], np.int32(3)))  # adjacent, not overlapping: three regions
    assert sorted((size, writable) for _, size, writable in regions.spans) == [(12, False), (12, False), (12, True)]


# ---- warp functions as the PTX ISA defines them: every mode ------------------------------------------------
def test_a_shuffle_reading_lanes_that_do_not_exist_is_an_error(rng):
    mod = module("warp_lanes.cu")
    x = rng.standard_normal(80).astype(np.float32)
    sums = nan_array(3)
    # The full mask in a partial warp is allowed (sm_70+: lanes that do not exist are not waited for) ...
    mod.get_function("warp_sum_within_lanes")(1, 80, (x, sums))
    np.testing.assert_allclose(sums, [x[:32].sum(), x[32:64].sum(), x[64:].sum()], rtol=1e-5)
    # ... reading them is the bug.
    with pytest.raises(SimError, match=r"kernel 'warp_sum_reads_missing_lanes': __shfl_down_sync at "
                                       r"warp_lanes.cu:11 in warp 2 of block \(0,0,0\): lanes 0-15 read lanes 16-31, "
                                       r"which do not exist \(the block's 80 threads end at lane 15 of this warp\)"):
        mod.get_function("warp_sum_reads_missing_lanes")(1, 80, (x, sums))
    mod.get_function("warp_sum_reads_missing_lanes")(1, 64, (x, sums))  # full warps: correct


def test_a_shuffle_reading_a_lane_outside_its_mask_is_an_error(rng):
    mod = module("warp_lanes.cu")
    x = rng.standard_normal(32).astype(np.float32)
    out = nan_array(32)
    mod.get_function("broadcast_within_mask")(1, 32, (x, out))
    np.testing.assert_array_equal(out, np.where(np.arange(32) < 16, x[15], x))
    with pytest.raises(SimError, match=r"'broadcast_from_lane_not_taking_part': __shfl_sync at warp_lanes.cu:30 in "
                                       r"warp 0 of block \(0,0,0\): lanes 0-15 read lane 20, which is not in the mask "
                                       r"0x0000ffff"):
        mod.get_function("broadcast_from_lane_not_taking_part")(1, 32, (x, out))


def test_a_lane_calling_with_a_mask_that_leaves_it_out_is_an_error(rng):
    x = rng.standard_normal(32).astype(np.float32)
    with pytest.raises(SimError, match=r"'caller_not_in_its_mask': __shfl_sync at warp_lanes.cu:45 in thread "
                                       r"\(0,0,0\) of block \(0,0,0\), lane 0 of its warp, with mask 0xfffffffe, "
                                       r"which leaves the calling lane out"):
        module("warp_lanes.cu").get_function("caller_not_in_its_mask")(1, 32, (x, nan_array(32)))


# ---- extern __shared__ as on a GPU: one buffer -----------------------------------------------------------
def test_two_extern_shared_arrays_of_one_kernel_are_refused_with_their_names(rng):
    mod = module("extern_shared_alias.cu")
    with pytest.raises(SimError, match=r"kernel 'two_extern_buffers' uses 2 extern __shared__ arrays, 'keys', "
                                       r"'values': on a GPU every extern __shared__ array starts at the same byte.*"
                                       r"`// minunet: aliases` \(missing on 'keys', 'values'\)"):
        mod.get_function("two_extern_buffers")
    x, y = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    out = nan_array(32)
    mod.get_function("one_buffer_carved")(1, 32, (x, y, out), shared_mem=2 * 32 * 4)  # the twin
    np.testing.assert_array_equal(out, np.roll(x, -1) * np.roll(y, -1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extern_shared_arrays_start_at_the_same_byte(rng, dtype):
    """Declared `// minunet: aliases`, two names are allowed, and they are one buffer, as on a GPU."""
    x = rng.standard_normal(32).astype(dtype)
    out = nan_array(32, dtype)
    module("extern_shared_alias.cu", dtype).get_function("aliased_on_purpose")(1, 32, (x, out),
                                                                               shared_mem=32 * x.itemsize)
    np.testing.assert_array_equal(out, x)  # the bytes read through as_bytes are what as_reals wrote


# ---- diagnosis: a misaligned vector access, an early return before a barrier -------------------------------
def test_a_misaligned_vector_load_is_named_with_address_alignment_and_line():
    f = SimModule(KERNELS / "limits" / "misaligned_vector.cu").get_function("load_float4")
    x, out = np.arange(64, dtype=np.float32), nan_array(4)
    f(1, 4, (x, out, np.int32(0)))
    np.testing.assert_array_equal(out, x[:16].reshape(4, 4).sum(1))
    with pytest.raises(SimError, match=r"'load_float4': thread \(0,0,0\) of block \(0,0,0\) accesses the misaligned "
                                       r"address 0x[0-9a-f]+ at misaligned_vector.cu:3: a 'const struct float4' "
                                       r"needs 16-byte alignment .*; the address is element \[1\] of global array 'x'"):
        f(1, 4, (x, out, np.int32(1)))


def test_an_early_return_before_a_barrier_names_the_line_it_returned_from():
    bugs = SimModule(KERNELS / "bugs.cu", defines={"MINUNET_REAL": "float"}, include_dirs=[paths.kernels_dir()])
    with pytest.raises(SimError, match=r"thread \(100,0,0\) of block \(0,0,0\) exited while 100 threads wait at "
                                       r"__syncthreads at bugs.cu:29 .*; it returned after its last comparison, at "
                                       r"bugs.cu:27$"):
        bugs.get_function("early_return")(1, 128, (nan_array(128), np.int32(100)))


# ---- the initcheck mode: memory read before anything wrote it ----------------------------------------------
H, W = 19, 21  # 3 x 3 blocks of 8 x 8 outputs, the last ones partial


def halo_case(kernel, how=None):
    """(launch, check) of a halo-filter kernel; launch(mod, correct) returns the output."""
    integer = kernel == "halo_min_filter_int"
    dtype = np.int32 if integer else np.float32

    def launch(mod, correct, rng=np.random.default_rng(3)):
        x = rng.integers(-100, 100, (H, W)).astype(dtype) if integer else rng.standard_normal((H, W)).astype(dtype)
        out = nan_array((H - 2) * (W - 2), dtype)
        args = (x, out, np.int32(H), np.int32(W)) + (() if how is None else (np.int32(how),)) + (np.int32(correct),)
        shared = 10 * 10 * 4 if kernel.endswith("dynamic") else 0
        mod.get_function(kernel)((3, 3), (8, 8), args, shared_mem=shared)
        windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3))
        return out, (windows.min((2, 3)) if integer else windows.max((2, 3))).ravel()
    return launch


def block_min_case(mod, correct, rng=np.random.default_rng(4)):
    x = rng.integers(-100, 100, 128).astype(np.int32)
    out = nan_array(2, np.int32)
    mod.get_function("block_min_atomic")(2, 64, (x, out, np.int32(correct)))
    return out, x.reshape(2, 64).min(1)


def vector_max_case(mod, correct, rng=np.random.default_rng(5)):
    x = rng.standard_normal(256).astype(np.float32)
    out = nan_array(64)
    mod.get_function("vector_max")(2, 32, (x, out, np.int32(correct)))
    return out, x.reshape(64, 4).max(1)


def running_max_case(mod, correct, rng=np.random.default_rng(6)):
    x = rng.standard_normal((5, 50)).astype(np.float32)
    out = nan_array(50)
    mod.get_function("running_max_in_output")(2, 32, (x, out, np.int32(50), np.int32(5), np.int32(correct)))
    return out, x.max(0)


# kernel: (launch, what the initcheck mode says about the bug)
UNINITIALISED = {
    "halo_max_filter compare": (halo_case("halo_max_filter", 0), r"reads __shared__ array 'tile' \(element 90\) at "
                                r"uninitialised_memory.cu:29, which no thread of the block has written since the "
                                r"block began"),
    "halo_max_filter fmax": (halo_case("halo_max_filter", 1), r"reads __shared__ array 'tile' \(element 90\)"),
    "halo_max_filter shuffle": (halo_case("halo_max_filter", 2), r"reads __shared__ array 'tile' \(element 90\)"),
    "halo_max_filter_dynamic": (halo_case("halo_max_filter_dynamic"), r"reads __shared__ array 'halo_tile' "
                                r"\(element 90\) at uninitialised_memory.cu:29"),
    "halo_min_filter_int": (halo_case("halo_min_filter_int"), r"reads __shared__ array 'tile' \(element 90\) at "
                            r"uninitialised_memory.cu:69"),
    "block_min_atomic": (block_min_case, r"reads __shared__ array 'least' \(element 0\) at "
                         r"uninitialised_memory.cu:80"),
    "vector_max": (vector_max_case, r"reads __shared__ array 'staged' \(element 3\) at uninitialised_memory.cu:95"),
    "running_max_in_output": (running_max_case, r"reads element \[0\] of global array 'out' \(argument 1, float32 "
                              r"\(50,\)\) at uninitialised_memory.cu:108, which no thread has written in this launch"),
}


@not_under_tsan
@pytest.mark.parametrize("case", list(UNINITIALISED))
def test_initcheck_names_a_read_of_memory_nobody_wrote(case):
    launch, report = UNINITIALISED[case]
    mod = module("uninitialised_memory.cu", initcheck=True)
    out, expect = launch(mod, correct=1)  # the twin: clean, and right
    np.testing.assert_array_equal(out, expect)
    with pytest.raises(SimError, match=r"kernel '\w+': thread \(\d+,\d+,\d+\) of block \(\d+,\d+,\d+\) " + report):
        launch(mod, correct=0)


def test_initcheck_reaches_every_shared_array_through_a_pointer():
    """GCC skips the accesses it can prove in bounds of a static (a __shared__ scalar, tile[0]): in the initcheck
    mode each declaration becomes a static under another name and a reference through an opaque pointer."""
    source = ("__shared__ __align__(16) real As[BK][BM + PAD];  // row loads\n"
              "  __shared__ int best, pair[f(1, 2)];\n"
              "extern __shared__ real dynamic[];  // __shared__ int not_this;\n")
    rewritten = shared_through_pointers(source, "k.cu").splitlines()
    assert rewritten[0] == ("__shared__ __align__(16) real minunet_sim_shared_As[BK][BM + PAD]; "
                            "auto& As = *::minunet_sim::launder(&minunet_sim_shared_As);  // row loads")
    assert rewritten[1] == ("  __shared__ int minunet_sim_shared_best; auto& best = *::minunet_sim::launder("
                            "&minunet_sim_shared_best); __shared__ int minunet_sim_shared_pair[f(1, 2)]; "
                            "auto& pair = *::minunet_sim::launder(&minunet_sim_shared_pair);")
    assert rewritten[2] == source.splitlines()[2]  # dynamic shared memory and comments stay


@not_under_tsan
def test_initcheck_names_accesses_outside_the_arrays_at_their_line(rng):
    mod = module("global_out_of_bounds.cu", initcheck=True)
    image = rng.standard_normal((6, 7)).astype(np.float32)
    with pytest.raises(SimError, match=r"reads element -7, 7 before the start of global array 'x' .* at "
                                       r"global_out_of_bounds.cu:55 \(found by the initcheck mode\)"):
        mod.get_function("stencil_reads_before_start")(2, 32, (image, nan_array(42), np.int32(6), np.int32(7)))
    f = SimModule(KERNELS / "limits" / "dynamic_shared_overrun.cu", defines={"MINUNET_REAL": "float"},
                  include_dirs=[paths.kernels_dir()], initcheck=True).get_function("forward_difference")
    x = rng.standard_normal(100).astype(np.float32)
    with pytest.raises(SimError, match=r"thread \(0,0,0\) of block \(0,0,0\) writes __shared__ array 'staged' "
                                       r"\(element 64\) at dynamic_shared_overrun.cu:10, past the bytes of dynamic "
                                       r"shared memory the launch asked for"):
        f(2, 64, (x, nan_array(100), np.int32(100)), shared_mem=64 * 4)


@not_under_tsan
def test_initcheck_combines_with_gpu_arithmetic_but_not_with_the_other_checkers(monkeypatch):
    module("uninitialised_memory.cu", initcheck=True, gpu_math=True)
    with pytest.raises(SimError, match="the initcheck mode and the race checker cannot be combined"):
        module("uninitialised_memory.cu", initcheck=True, racecheck=True)
    monkeypatch.setenv("MINUNET_SIM_SANITIZE", "1")
    with pytest.raises(SimError, match="the initcheck mode and MINUNET_SIM_SANITIZE=1 cannot be combined"):
        module("uninitialised_memory.cu", initcheck=True)


# ---- every correct twin runs clean in every mode; so does every kernel of kernels/ in the initcheck mode -----
def twin_launches():
    """(file, launch(mod) -> (out, expected)) for every correct twin of this file's bugs."""
    rng = np.random.default_rng(7)
    a, x, image = (rng.standard_normal(s).astype(np.float32) for s in [(4, 20), 100, (6, 7)])
    x80, x32, y32 = (rng.standard_normal(n).astype(np.float32) for n in (80, 32, 32))
    padded = np.pad(image, ((1, 1), (0, 0)))

    def run(kernel, grid, block, make_args, expect, shared_mem=0):
        def launch(mod):
            args = make_args()
            mod.get_function(kernel)(grid, block, args, shared_mem=shared_mem)
            return next(arg for arg in args[::-1] if isinstance(arg, np.ndarray)), expect
        return launch

    twins = [
        ("global_out_of_bounds.cu", run("tile_loader_checked", 4, 16, lambda: (a, nan_array(4), np.int32(20)),
                                        a.sum(1))),
        ("global_out_of_bounds.cu", run("difference_checked", 4, 32, lambda: (x, nan_array(100), np.int32(100)),
                                        np.diff(x, prepend=np.float32(0)))),
        ("global_out_of_bounds.cu", run("forward_difference_checked", 1, 32,
                                        lambda: (x[:5], nan_array(5), np.int32(5)), np.append(np.diff(x[:5]), 0))),
        ("global_out_of_bounds.cu", run("stencil_checked", 2, 32,
                                        lambda: (image, nan_array(42), np.int32(6), np.int32(7)),
                                        (padded[:-2] + padded[2:]).ravel())),
        ("warp_lanes.cu", run("warp_sum_within_lanes", 1, 80, lambda: (x80, nan_array(3)),
                              [x80[:32].sum(), x80[32:64].sum(), x80[64:].sum()])),
        ("warp_lanes.cu", run("broadcast_within_mask", 1, 32, lambda: (x32, nan_array(32)),
                              np.where(np.arange(32) < 16, x32[15], x32))),
        ("extern_shared_alias.cu", run("one_buffer_carved", 1, 32, lambda: (x32, y32, nan_array(32)),
                                       np.roll(x32, -1) * np.roll(y32, -1), shared_mem=2 * 32 * 4)),
        ("extern_shared_alias.cu", run("aliased_on_purpose", 1, 32, lambda: (x32, nan_array(32)), x32,
                                       shared_mem=32 * 4)),
    ]
    twins += [("uninitialised_memory.cu", lambda mod, case=case: UNINITIALISED[case][0](mod, correct=1))
              for case in UNINITIALISED]
    return twins


MODES = {"default": {}, "shuffled": {"shuffle_seed": 5}, "gpu-math": {"gpu_math": True},
         "initcheck": {"initcheck": True}}


@pytest.mark.parametrize("mode", list(MODES))
def test_correct_twins_run_clean(mode):
    """In each mode here; under the race checker (tests/test_racecheck_run.py runs this file so) and the
    sanitizers (below) too."""
    if mode == "initcheck" and tsan_loaded():
        pytest.skip("the race checker excludes the initcheck mode")
    for file, launch in twin_launches():
        mod = module(file, **MODES[mode])
        for _ in range(2):  # both placements of the arrays in global memory
            out, expect = launch(mod)
            np.testing.assert_allclose(out, expect, rtol=1e-5, err_msg=f"{file} in mode {mode}")


@not_under_tsan
def test_todays_kernels_run_clean_in_the_initcheck_mode(monkeypatch):
    """Every kernel the backends launch (each conv version, a U-Net training step), float32, in the initcheck
    mode: no read of memory nobody wrote, no access outside the arrays."""
    monkeypatch.setenv("MINUNET_SIM_INITCHECK", "1")
    sim = get_backend("sim").launcher  # the census's: its initcheck builds must not outlive this test
    monkeypatch.setattr(sim, "_modules", {})
    monkeypatch.setattr(sim, "_functions", {})
    assert len(launch_census((np.float32,))) > 30


@not_under_tsan
def test_correct_twins_run_clean_and_a_bug_is_named_under_the_sanitizers():
    """MINUNET_SIM_SANITIZE=1 (AddressSanitizer, UBSan; its first report ends the process): the twins run clean,
    then a read before the start of a global array is reported at its line."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "import numpy as np\nfrom test_sim_gpu_faithful import module, nan_array, twin_launches\n"
              "for file, launch in twin_launches():\n"
              "    out, expect = launch(module(file))\n"
              "    np.testing.assert_allclose(out, expect, rtol=1e-5)\n"
              "print('twins ran clean', flush=True)\n"
              "image = np.ones((6, 7), np.float32)\n"
              "module('global_out_of_bounds.cu').get_function('stencil_reads_before_start')(\n"
              "    2, 32, (image, nan_array(42), np.int32(6), np.int32(7)))\n")
    result = run_sanitized(script, timeout=600)
    assert "twins ran clean" in result.stdout, result.stderr[-3000:]
    assert result.returncode != 0 and "AddressSanitizer: use-after-poison" in result.stderr, result.stderr[-3000:]
    assert "global_out_of_bounds.cu:55" in result.stderr and "in stencil_reads_before_start" in result.stderr, \
        result.stderr[-3000:]
