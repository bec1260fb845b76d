"""How many threads BLAS (OpenBLAS under NumPy) may use, chosen on purpose: `--threads` of train, predict, bench.

Why it matters: OpenBLAS starts one thread per core and its threads wait for each other at the end of every
matrix product. When another process holds one of the cores (a browser, a second job), the product waits for
the thread that is not running: on 2 cores with one competing process a small-U-Net step took 541 ms with 2
BLAS threads against 137 ms with 1. So the default leaves one core to the rest of the machine (cores - 1, at
least 1), unless a BLAS thread variable of the environment says otherwise; benchmarks/results/ holds the
measurements behind it. Only the BLAS pool is limited: NumPy's
elementwise ops and SciPy's image filters run on one thread anyway.
"""
import os
from contextlib import contextmanager

OPTION_HELP = ("BLAS threads for the numpy device's matrix products (default: OPENBLAS_NUM_THREADS, "
               "OMP_NUM_THREADS or MKL_NUM_THREADS where set; for K processes an MPI launcher started on this machine, "
               "1/K of its usable cores each; else the usable cores minus one, at least 1: a core left for the "
               "rest of the machine keeps BLAS from waiting on a busy core)")


def usable_cores():
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# A count the user set for BLAS: the default then, so that --threads alone overrides it.
ENV_NAMES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# What MPICH and Open MPI tell each process they start: how many processes share this machine.
LOCAL_PROCESS_NAMES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def _from_environment():
    """(name, count) of the first of ENV_NAMES set to a count >= 1, or None."""
    for name in ENV_NAMES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return name, int(value)
    return None


def processes_on_this_machine():
    """How many processes an MPI launcher started on this machine (1 without one)."""
    for name in LOCAL_PROCESS_NAMES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def default_threads():
    """A BLAS count of the environment; else, for K data-parallel processes on one machine, 1/K of its cores
    each (2 processes on 2 cores, 20 steps: 150 s with 2 BLAS threads each, 13 s with 1; benchmarks/README.md);
    else the usable cores minus one."""
    found = _from_environment()
    if found:
        return found[1]
    local = processes_on_this_machine()
    return max(1, usable_cores() // local if local > 1 else usable_cores() - 1)


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
    found = _from_environment()
    local = processes_on_this_machine()
    how = ("--threads" if given else f"default: {found[0]}={found[1]}" if found
           else f"default: {usable_cores()} usable cores shared by {local} processes" if local > 1
           else f"default: {usable_cores()} usable cores minus one, at least 1")
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
