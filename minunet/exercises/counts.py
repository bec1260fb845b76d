"""Memory accesses per thread, counted by the simulator, as GPU-Puzzles shows them: on success the check runs
one trial again with every load and store of the kernels counted (SimModule(counting=True), counting.h), for
the learner's file and for the solution on the same inputs (checker.count_report), and prints both. An exercise's targets hold the
learner's counts to the solution's, so that a correct solution that reads global memory where the solution
reads a tile, or that has one thread do the work of the block, is told it is not done.
"""
import ctypes
from dataclasses import dataclass

import numpy as np

from ..nvrtc import text_table

COUNTERS = ("global loads", "global stores", "shared loads", "shared stores")


class _Range(ctypes.Structure):  # counting.h's minunet_sim_count::Range
    _fields_ = [("lo", ctypes.c_ulonglong), ("hi", ctypes.c_ulonglong), ("kind", ctypes.c_ulonglong)]


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


_LIBC = ctypes.CDLL(None)


def _load_address(library):
    info = _DlInfo()
    if not _LIBC.dladdr(ctypes.cast(library.minunet_sim_count_set, ctypes.c_void_p), ctypes.byref(info)):
        raise OSError("dladdr found no library for the counter")
    return info.dli_fbase


@dataclass
class Counted:
    """One kernel's launches: counts (threads, 4) of COUNTERS, and the elements of its output arrays."""
    kernel: str
    counts: np.ndarray
    outputs: int

    def metric(self, name):
        global_loads, _, shared_loads, _ = self.counts.sum(axis=0)
        return {"global loads per output": global_loads / max(self.outputs, 1),
                "shared loads per output": shared_loads / max(self.outputs, 1),
                "accesses of the busiest thread": int(self.counts.sum(axis=1).max())}[name]


def counted_launch(kernel, grid, block, args, shared_mem):
    """Launch a SimKernel of a counting build and count its accesses: Counted."""
    library = kernel.module.library
    base = _load_address(library)
    layout = kernel.module.kernels[kernel.name].shared
    shared = [(base + offset, base + offset + size, 1) for _, offset, size in layout.static]
    shared += [(base + offset, base + offset + shared_mem, 1) for _, offset in layout.dynamic]
    threads = int(np.prod(grid)) * int(np.prod(block))
    counts = np.zeros((threads, len(COUNTERS)), np.uint64)
    tables = []  # kept alive until the launch is over
    library.minunet_sim_count_set.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_void_p]

    def count_at(device):  # the kernel works on guarded copies of its arrays (minunet/sim/global_memory.py)
        ranges = [(device[i], device[i] + a.nbytes, 0)
                  for i, (p, a) in enumerate(zip(kernel.params, args)) if p.pointer] + shared
        tables.append((_Range * len(ranges))(*[_Range(*r) for r in ranges]))
        library.minunet_sim_count_set(ctypes.addressof(tables[-1]), len(ranges), counts.ctypes.data)

    kernel.before_launch = count_at
    try:
        kernel(grid, block, args, shared_mem)
    finally:
        kernel.before_launch = None
        library.minunet_sim_count_set(None, 0, None)
    outputs = sum(a.size for p, a in zip(kernel.params, args) if p.pointer and not p.const)
    return Counted(kernel.name, counts, outputs)


def merged(launches):
    """{kernel: Counted} over all launches of each kernel, in order of first launch."""
    out = {}
    for c in launches:
        if c.kernel in out:
            before = out[c.kernel]
            c = Counted(c.kernel, np.concatenate([before.counts, c.counts]), before.outputs + c.outputs)
        out[c.kernel] = c
    return out


def _row(who, c):
    per_thread = c.counts.mean(axis=0)
    return (c.kernel, who, str(len(c.counts)), *(f"{v:.2f}" for v in per_thread),
            f"{c.metric('global loads per output'):.2f}", f"{c.metric('shared loads per output'):.2f}",
            str(c.metric("accesses of the busiest thread")))


def report(exercise, mine, theirs):
    """(ok, text): the counts {kernel: Counted} of the learner's kernels and the solution's on the same inputs,
    as a table, and the exercise's targets."""
    header = ("kernel", "", "threads", "global ld", "global st", "shared ld", "shared st", "global ld",
              "shared ld", "busiest")
    rows = [row for kernel in mine for row in
            [_row("yours", mine[kernel])] + ([_row("solution", theirs[kernel])] if kernel in theirs else [])]
    text = ["memory accesses on trial 1's inputs, counted by the simulator: loads (ld) and stores (st) per thread "
            "(the mean), global and shared loads per output element, and the accesses of the busiest thread:",
            text_table(header, rows)]
    ok = True
    for kernel, metric, factor in exercise.targets:
        if kernel not in mine or kernel not in theirs:
            continue
        got, target = mine[kernel].metric(metric), factor * theirs[kernel].metric(metric)
        if got > target:
            ok = False
            text.append(f"NOT DONE: {kernel}: {metric} {got:.4g}, the target is at most {target:.4g} ({factor:g} "
                        f"times the solution's): {exercise.target_hint}")
        else:
            text.append(f"target met: {kernel}: {metric} {got:.4g} <= {target:.4g} ({factor:g} x the solution's)")
    return ok, "\n".join(text)
