"""How many threads BLAS (OpenBLAS under NumPy) may use, chosen on purpose: `--threads` of train, predict, bench.

Why it matters: OpenBLAS starts one thread per core and its threads wait for each other at the end of every
matrix product. When another process holds one of the cores (a browser, a second job), the product waits for
the thread that is not running: on 2 cores with one competing process a small-U-Net step took 541 ms with 2
BLAS threads against 137 ms with 1. So the default leaves one core to the rest of the machine (cores - 1, at
least 1); benchmarks/results/ holds the measurements behind it. Only the BLAS pool is limited: NumPy's
elementwise ops and SciPy's image filters run on one thread anyway.
"""
import os
from contextlib import contextmanager

OPTION_HELP = ("BLAS threads for the numpy device's matrix products (default: the usable cores minus one, at "
               "least 1: a core left for the rest of the machine keeps BLAS from waiting on a busy core)")


def usable_cores():
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads():
    return max(1, usable_cores() - 1)


def add_threads_option(parser):
    parser.add_argument("--threads", type=int, help=OPTION_HELP)


def resolve_threads(threads):
    """The thread count in force: `threads` checked, or the default when None."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads must be an int >= 1, got {threads!r}")
    if threads > usable_cores():
        raise ValueError(f"--threads {threads}: this process may use {usable_cores()} cores; more BLAS threads "
                         f"than cores only wait for each other")
    return threads


def describe(threads, given):
    """The start-up line's words for the choice."""
    how = "--threads" if given else f"default: {usable_cores()} usable cores minus one, at least 1"
    return f"BLAS threads {threads} ({how})"


@contextmanager
def blas_threads(threads):
    """Limit every BLAS library loaded in this process (threadpoolctl) to `threads` inside the block."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def blas_threads_now():
    """The thread counts of the BLAS libraries loaded now (what a test checks)."""
    from threadpoolctl import threadpool_info
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
