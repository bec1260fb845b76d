"""On a CPU: the numpy device's convolutions and PyTorch CPU's on the layers of the small U-Net that
python -m minunet.train trains by default, and one training step of both; the ratios to PyTorch at one thread
and at every core, with the convolution algorithm the numpy device chose per layer."""
import statistics
import time

import numpy as np

from .. import threads
from ..ops import choice
from .blas_threads import limited, load_averages
from .check_then_time import Candidate, check_then_time, to_numpy
from .layers import DIRECTIONS, arrays, minunet_call, spread_to_layers, unique_shapes, unet_layers
from .timing import cpu_timer, median_time
from .training import training_step_minunet, training_step_torch
from .check_then_time import check, reference

SMALL_UNET = dict(tile=124, batch=2, depth=3, base=16)
# The networks whose training step is compared with PyTorch's: the bench's and python -m minunet.train's, and
# the same network on a 188 px tile, one image (issue #25's).
NETWORKS = {"depth 3, 16 channels, 124 px, batch 2": SMALL_UNET,
            "depth 3, 16 channels, 188 px, batch 1": dict(tile=188, batch=1, depth=3, base=16)}


def bench_kernels_cpu(layers, quick, log):
    """Per distinct layer shape and direction: the numpy device's op and PyTorch CPU's on the same float32
    arrays, each checked against the float64 reference before it is timed."""
    from ..backends import get_backend
    backend = get_backend("numpy")
    torch = torch_cpu()
    if torch:
        from ..torch_twin import op_call
    rows, rng, failed = [], np.random.default_rng(0), {}
    runs = (dict(min_runs=1, max_runs=2, budget_s=0.0, warmup=1) if quick
            else dict(min_runs=5, max_runs=30, budget_s=0.3))
    for layer in unique_shapes(layers):
        host = arrays(layer, rng)
        tensors = {k: torch.from_numpy(v) for k, v in host.items()} if torch else None
        for direction in DIRECTIONS:
            candidates = [Candidate("numpy", False, minunet_call(backend, layer, direction, host), cpu_timer)]
            if torch:
                candidates.append(Candidate("torch cpu", False, op_call(layer, direction, tensors), cpu_timer))
            rows += check_then_time(layer, direction, host, candidates, runs, failed, log)
    return spread_to_layers(rows, layers)


def bench_training_cpu(quick, log):
    rng = np.random.default_rng(0)
    runs = dict(min_runs=1, max_runs=2, budget_s=1.0, warmup=1) if quick else dict(min_runs=3, max_runs=10, budget_s=20.0)
    results = {"network": dict(SMALL_UNET)}
    step, _ = training_step_minunet("numpy", rng=rng, **SMALL_UNET)
    seconds, n = median_time(step, cpu_timer, **runs)
    results["minunet numpy"] = dict(seconds=seconds, runs=n)
    log(f"training step minunet numpy {SMALL_UNET}: {seconds * 1e3:.0f} ms")
    torch = torch_cpu()
    if torch is None:
        results["torch cpu"] = dict(skipped="PyTorch is not installed")
        log("training step torch cpu: skipped (PyTorch is not installed)")
        return results
    step = training_step_torch("cpu", rng=rng, **SMALL_UNET)
    seconds, n = median_time(step, cpu_timer, **runs)
    results["torch cpu"] = dict(seconds=seconds, runs=n, threads=torch.get_num_threads())
    log(f"training step torch cpu: {seconds * 1e3:.0f} ms")
    return results


def torch_cpu():
    try:
        import torch
    except ImportError:
        return None
    return torch


def bench_against_torch(quick, log):
    """The numpy device against PyTorch CPU at one thread and at every usable core, in this one run: each
    network's training step and conv3x3's three directions summed over the small U-Net's layers (the two
    implementations in turn, a few calls each, so that a change in the machine's load hits both), and the
    algorithm the numpy device chose for each layer and direction, measured in this run (the choices
    remembered on disk are set aside). {"steps", "conv", "choices"}: rows with the load averages."""
    torch = torch_cpu()
    choice.forget(read_file=False)
    results = {"steps": [], "conv": [], "choices": []}
    conv_layers = [layer for layer in unet_layers(**SMALL_UNET) if layer["op"] == "conv3x3"]
    for n in sorted({1, threads.usable_cores()}):
        with limited(n):
            for network, config in NETWORKS.items():
                results["steps"] += _steps_side_by_side(network, config, n, torch, quick, log)
            results["conv"] += _conv_side_by_side(conv_layers, n, torch, quick, log)
            results["choices"] += _choices(conv_layers, n, log)
    return results


def _conv_side_by_side(conv_layers, n, torch, quick, log):
    """Per direction, each implementation's median time on every layer (checked against the float64 reference
    first, as check_then_time does), summed over the layers."""
    from ..backends import get_backend
    if torch:  # the twin imports torch
        from ..torch_twin import op_call
    backend, rng, totals = get_backend("numpy"), np.random.default_rng(0), {}
    for layer in unique_shapes(conv_layers):
        host = arrays(layer, rng)
        tensors = {k: torch.from_numpy(v) for k, v in host.items()} if torch else None
        count = sum(1 for other in conv_layers if all(other[k] == layer[k] for k in ("N", "Ci", "H", "W", "Co")))
        for direction in DIRECTIONS:
            calls = {"numpy": minunet_call(backend, layer, direction, host)}
            if torch:
                calls["torch cpu"] = op_call(layer, direction, tensors)
            ref = reference(layer, direction, host)
            for impl, call in list(calls.items()):
                settle()  # the first call: the numpy device times its algorithms, on a quiet process
                result = check(to_numpy(call()), ref)
                if result["check"] != "ok":
                    log(f"MISMATCH conv3x3_{direction} {impl} on {layer['name']}: {result['mismatch']}; not timed")
                    del calls[impl]
            times = {impl: [] for impl in calls}
            for _ in range(1 if quick else 5):
                for impl, call in calls.items():
                    settle()
                    times[impl] += [_wall_and_cpu(call) for _ in range(BLOCK)]
            for impl, ts in times.items():
                total = totals.setdefault((direction, impl), dict(seconds=0.0, cpu_seconds=0.0))
                for key, median in _medians(ts).items():
                    total[key] += median * count
    load = load_averages()
    rows = [dict(threads=n, direction=d, impl=impl, load=load, **t) for (d, impl), t in totals.items()]
    for r in rows:
        log(f"conv3x3 {r['direction']} over the small U-Net's layers, {r['impl']}, {n} threads: "
            f"{r['seconds'] * 1e3:.2f} ms (load {load})")
    return rows


def _steps_side_by_side(network, config, n, torch, quick, log):
    rng = np.random.default_rng(0)
    steps = {"minunet numpy": training_step_minunet("numpy", rng=rng, **config)[0]}
    if torch:
        steps["torch cpu"] = training_step_torch("cpu", rng=rng, **config)
    times = {impl: [] for impl in steps}
    for step in steps.values():
        settle()
        step()  # warm-up: the numpy device's choice of algorithms is made here
    for _ in range(1 if quick else 3):
        for impl, step in steps.items():
            settle()
            times[impl] += [_wall_and_cpu(step) for _ in range(BLOCK)]
    load = load_averages()
    rows = [dict(network=network, threads=n, impl=impl, runs=len(ts), load=load, **_medians(ts))
            for impl, ts in times.items()]
    log(f"training step, {network}, {n} threads: " + ", ".join(f"{r['impl']} {r['seconds'] * 1e3:.1f} ms"
                                                             for r in rows) + f" (load {load})")
    return rows


# Calls are timed in blocks of BLOCK, the two implementations' blocks in turn, each block started on a quiet
# process (settle()): after its calls PyTorch's OpenMP threads spin for some milliseconds, waiting for more
# work, and a numpy call on several threads that starts then shares the cores with them (measured: a 16-channel
# conv3x3 on 2 threads took 3.52 ms right after one of PyTorch's, 2.86 ms 50 ms later; the spinning burnt
# 6.5 ms of CPU time).
BLOCK = 3


def settle(limit_s=0.1, clocks=(time.perf_counter, time.process_time, time.sleep)):
    """Sleep until no thread of this process runs: 5 ms at a time, until one passes with under 0.5 ms of CPU
    time (PyTorch's threads have gone to sleep), at most limit_s. Untimed; numpy's threads never spin.
    (clocks: wall clock, the process's CPU time, sleep; a test's fakes.)"""
    wall, cpu_time, sleep = clocks
    deadline = wall() + limit_s
    while wall() < deadline:
        cpu = cpu_time()
        sleep(0.005)
        if cpu_time() - cpu < 0.0005:
            return


def _wall_and_cpu(call):
    """(wall-clock seconds, CPU seconds of the process, all its threads) of one call. On a machine other
    processes share, the wall clock counts the time the call waited for a core too; the CPU time does not."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _medians(times):
    return dict(seconds=statistics.median(t[0] for t in times), cpu_seconds=statistics.median(t[1] for t in times))


def _choices(conv_layers, n, log):
    """The algorithm the numpy device chose for each conv3x3 layer and direction at n threads (float32), and
    the least time of each candidate where this process measured them (None: forced, or read from the file)."""
    made, rows = choice.chosen(), []
    for layer in conv_layers:
        shapes = tuple(layer[k] for k in ("N", "Ci", "H", "W", "Co")) + (0,)
        for direction in DIRECTIONS:
            found = made.get(choice.choice_key(f"conv3x3_{direction}", shapes, np.float32, n))
            if found:
                rows.append(dict(threads=n, layer=layer["name"], direction=direction, **found))
    log(f"conv3x3 algorithms chosen at {n} threads: " + ", ".join(
        f"{r['layer']} {r['direction']} {r['algorithm']}" for r in rows))
    return rows
