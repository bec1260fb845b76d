"""The simulator names kernel bugs a GPU would show (issue #26): one kernel file per bug class in
tests/sim_kernels/gpu_faithful/, each bug beside a correct twin that runs clean.

- global_out_of_bounds.cu: global memory past either end of an argument array, in every mode (the runtime's
  copies of the arrays lie between guard pages, global_memory.h).
- warp_lanes.cu: a shuffle reading a lane that does not exist or does not take part, a lane calling with a mask
  that leaves it out, in every mode; a mask naming lanes that do not exist stays allowed, as on sm_70+.
- extern_shared_alias.cu: two extern __shared__ arrays used as separate buffers (on a GPU they start at the
  same byte): refused by name unless declared `// minunet: aliases`, and then one buffer, as on a GPU.
"""
import numpy as np
import pytest

from minunet import paths
from minunet.sim import SimError, SimLauncher, SimModule
from minunet.sim.global_memory import Regions
from test_sim import KERNELS, REAL

FAITHFUL = KERNELS / "gpu_faithful"


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
                                       rf"reads element 80 of global array 'a' \(argument 0, {np.dtype(dtype)} "
                                       r"\(4, 20\)\), 1 past its end .*global_out_of_bounds.cu:15 "):
        mod.get_function("tile_loader_reads_past_end")(4, 16, (a, sums, np.int32(20)))


def test_a_read_before_the_start_of_a_global_array_is_named(rng):
    mod = module("global_out_of_bounds.cu")
    image = rng.standard_normal((6, 7)).astype(np.float32)
    out = nan_array(42)
    launch_twice(mod.get_function("stencil_checked"), 2, 32, (image, out, np.int32(6), np.int32(7)))
    padded = np.pad(image, ((1, 1), (0, 0)))
    np.testing.assert_array_equal(out, (padded[:-2] + padded[2:]).ravel())
    with pytest.raises(SimError, match=r"'stencil_reads_before_start': thread \(0,0,0\) of block \(0,0,0\) reads "
                                       r"element -7 of global array 'x' .*7 before its start .*"
                                       r"global_out_of_bounds.cu:55 "):
        launch_twice(mod.get_function("stencil_reads_before_start"), 2, 32, (image, out, np.int32(6), np.int32(7)))


def test_a_write_before_the_start_is_seen_after_the_launch_and_at_its_line(rng):
    mod = module("global_out_of_bounds.cu")
    x = rng.standard_normal(100).astype(np.float32)
    out = nan_array(100)
    launch_twice(mod.get_function("difference_checked"), 4, 32, (x, out, np.int32(100)))
    np.testing.assert_array_equal(out, np.diff(x, prepend=np.float32(0)))
    f = mod.get_function("difference_writes_before_start")
    with pytest.raises(SimError, match=r"'difference_writes_before_start' wrote element -1 of global array 'out' "
                                       r"\(argument 1, float32 \(100,\)\), 1 before its start \(seen in its guard "
                                       r"bytes after the launch.*MINUNET_SIM_INITCHECK=1 names both"):
        f(4, 32, (x, out, np.int32(100)))  # the end is guarded: the stray write lands in the canary bytes
    with pytest.raises(SimError, match=r"thread \(0,0,0\) of block \(0,0,0\) writes element -1 of global array "
                                       r"'out'.*global_out_of_bounds.cu:42 "):
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
    with pytest.raises(SimError, match=r"'caller_not_in_its_mask': __shfl_sync at warp_lanes.cu:45 in thread \(0,0,0\) "
                                       r"of block \(0,0,0\), lane 0 of its warp, with mask 0xfffffffe, which leaves the "
                                       r"calling lane out"):
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
