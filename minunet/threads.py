"""How many threads the numpy device uses, chosen on purpose: `--threads` of train, predict, bench; and the
small thread pool that splits an op's work over them.

Why it matters: OpenBLAS starts one thread per core and its threads wait for each other at the end of every
matrix product. When another process holds one of the cores (a browser, a second job), the product waits for
the thread that is not running: on 2 cores with one competing process a small-U-Net step took 541 ms with 2
BLAS threads against 137 ms with 1. So the default leaves one core to the rest of the machine (cores - 1, at
least 1), unless a BLAS thread variable of the environment says otherwise; benchmarks/results/ holds the
measurements behind it.

How the threads are used (`cpu_threads(n)`): the numpy device splits each op's work into slices that do not
depend on n (a convolution's images and bands of rows, an element-wise pass's images or channels), and its
n threads take the next slice as they finish one, each slice's matrix products on one BLAS thread. So the
element-wise passes use every thread too (NumPy releases the GIL inside its loops and BLAS), a thread that
is not scheduled holds up only its own slice, and the results do not depend on n.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

OPTION_HELP = ("threads of the numpy device: matrix products and element-wise passes (default: OPENBLAS_NUM_THREADS, "
               "OMP_NUM_THREADS or MKL_NUM_THREADS where set; for K processes an MPI launcher started on this machine, "
               "1/K of its usable cores each; else the usable cores minus one, at least 1: a core left for the "
               "rest of the machine keeps the threads from waiting on a busy core)")


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
        raise ValueError(f"--threads {threads}: this process may use {usable_cores()} cores; more threads "
                         f"than cores only wait for each other")
    return threads


def describe(threads, given):
    """The start-up line's words for the choice."""
    found = _from_environment()
    local = processes_on_this_machine()
    how = ("--threads" if given else f"default: {found[0]}={found[1]}" if found
           else f"default: {usable_cores()} usable cores shared by {local} processes" if local > 1
           else f"default: {usable_cores()} usable cores minus one, at least 1")
    return f"threads {threads} ({how})"


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


# -- the numpy device's threads ------------------------------------------------------------------------------
_workers = 1  # outside cpu_threads(): one thread, as a library import should be
_pool = None
_inside = threading.local()  # a slice that calls parallel() again runs its parts itself (no pool deadlock)


@contextmanager
def cpu_threads(threads):
    """The numpy device runs on `threads` threads inside the block: parallel() splits its work over them, and
    BLAS (every BLAS library loaded, threadpoolctl) runs one thread inside each slice."""
    global _workers
    previous, _workers = _workers, threads
    try:
        with blas_threads(1):
            yield
    finally:
        _workers = previous


def cpu_threads_now():
    """The numpy device's thread count in force now."""
    return _workers


def parallel(task, count):
    """task(i) for every i in range(count), on the numpy device's threads: each thread takes the next i as it
    finishes one (next() on a shared iterator is atomic under the GIL), the calling thread too. The tasks
    must write disjoint outputs; an exception in any is raised here after all have stopped."""
    n = min(_workers, count)
    if n <= 1 or getattr(_inside, "busy", False):
        for i in range(count):
            task(i)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, usable_cores() - 1), thread_name_prefix="minunet")
    indices = iter(range(count))

    def work():
        _inside.busy = True
        try:
            for i in indices:
                task(i)
        finally:
            _inside.busy = False

    helpers = [_pool.submit(work) for _ in range(n - 1)]
    try:
        work()
    finally:
        errors = [f.exception() for f in helpers]
    for error in errors:
        if error is not None:
            raise error


# An element-wise pass in slices of 128 Ki elements (512 KiB of float32, in a core's L2). Smaller slices are
# numpy calls of some 10 us, where two threads wait on each other for the GIL more than they gain: a training
# step of the small U-Net on 2 threads took 33.6 ms with 64 Ki, 31.7 ms with 128 Ki, 32.1 ms with 256 Ki
# (a 2-core Xeon, 15 alternating rounds; another run found one slice per pass, no threads, 4% slower than 64 Ki).
SLICE_ELEMENTS = 1 << 17


def slices(task, count, item_size=1):
    """task(slice) over consecutive slices of range(count) (items of item_size elements each: 1 for a flat
    view, H*W for the planes of an image), each about SLICE_ELEMENTS elements, on the numpy device's threads;
    on one thread, one slice: a pass whose every output depends on its own items gives the same result either
    way, and a slice costs some microseconds of Python."""
    parts = 1 if _workers == 1 else max(1, min(count, -(-count * item_size // SLICE_ELEMENTS)))
    bounds = [count * i // parts for i in range(parts + 1)]
    parallel(lambda i: task(slice(bounds[i], bounds[i + 1])), parts)


def planes(a):
    """(N, C, H, W) -> (N*C, H, W), a view (a C-contiguous array's planes, for slices())."""
    return a.reshape(-1, *a.shape[2:])


def copy(dst, src):
    """dst[...] = src for 4-D arrays (views) of one shape, by image and block of channels on the threads."""
    N, C, H, W = src.shape
    slices(lambda s: [np.copyto(dst[n, s], src[n, s]) for n in range(N)], C, N * H * W)
