"""On a CPU: the numpy device's convolutions and PyTorch CPU's on the layers of the small U-Net that
python -m minunet.train trains by default, and one training step of both."""
import numpy as np

from .check_then_time import Candidate, check_then_time
from .layers import DIRECTIONS, arrays, minunet_call, spread_to_layers, unique_shapes
from .timing import cpu_timer, median_time
from .training import training_step_minunet, training_step_torch

SMALL_UNET = dict(tile=124, batch=2, depth=3, base=16)


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
