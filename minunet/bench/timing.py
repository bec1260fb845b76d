"""Timers: wall clock on the CPU; CUDA events on a GPU, each timed launch preceded by a write of a buffer
twice the GPU's L2 cache (outside the events), so that no launch finds its operands left in L2 by the one
before, as in a network, where other layers run in between (llm.c's dev/cuda does the same)."""
import statistics
import time


def median_time(run, timer, min_runs=5, max_runs=50, budget_s=0.3, warmup=2):
    """(median seconds, runs) of run() after `warmup` untimed calls (compilation happens there)."""
    for _ in range(warmup):
        run()
    times, spent = [], 0.0
    while len(times) < min_runs or (len(times) < max_runs and spent < budget_s):
        t = timer(run)
        times.append(t)
        spent += t
    return statistics.median(times), len(times)


def best_time(run, repeats):
    """The least wall-clock seconds of run() over `repeats` calls after one untimed call."""
    run()
    return min(cpu_timer(run) for _ in range(repeats))


def cpu_timer(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def cupy_timer():
    """A timer(run) for CuPy launches on the current GPU: CUDA events, the L2 cache flushed before each."""
    import cupy
    runtime = cupy.cuda.runtime
    l2_bytes = runtime.deviceGetAttribute(runtime.cudaDevAttrL2CacheSize, cupy.cuda.Device().id)
    flush = cupy.empty(2 * l2_bytes, cupy.uint8)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()

    def timer(run):
        flush.fill(0)  # queued before the start event on the same stream: evicts L2, is not timed
        start.record()
        run()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3
    return timer


def torch_timer():
    """The same for PyTorch's launches (its own stream and buffer)."""
    import torch
    flush = torch.empty(2 * torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size,
                        dtype=torch.uint8, device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timer(run):
        flush.zero_()
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    return timer
