"""On a GPU: every kernel version and PyTorch (cuDNN) on the U-Net's layers, each checked before it is timed,
and one training step of both networks."""
import numpy as np

from .check_then_time import Candidate, check_then_time
from .layers import DIRECTIONS, arrays, cost, kernel_versions, minunet_call, spread_to_layers, unique_shapes
from .timing import cupy_timer, median_time, torch_timer
from .training import training_step_minunet, training_step_torch

# Seconds of timed launches for all kernel timings together (438 on the paper's U-Net: each kernel version and
# PyTorch's two, per layer shape and direction): each timing gets an equal share, at most 0.2 s. With the
# checks, the reference, the training step and the compilations, the bench then fits gpu_session.sh's 175 s
# cut with a margin (the estimate in benchmarks/gpu_session.sh's header).
TIMING_BUDGET_S = 45.0
# The network the cuda bench measures unless told otherwise (--unet): the paper's.
PAPER_UNET = dict(tile=572, batch=1, depth=5, base=64)


def bench_kernels_cuda(layers, quick, log):
    """Rows of every (layer shape, direction, implementation): every kernel version, and PyTorch with TF32 off
    and on, checked against the float64 reference before any is timed (check_then_time)."""
    import cupy

    from ..backends import get_backend
    backend = get_backend("cuda")
    rows, rng, failed = [], np.random.default_rng(0), {}
    torch = torch_cuda()
    shapes = unique_shapes(layers)
    impls = [(layer, d, len(kernel_versions(layer, d)) + (2 if torch else 0)) for layer in shapes for d in DIRECTIONS]
    timings = sum(n for _, _, n in impls)
    tflop = sum(cost(layer, d)[0] * n for layer, d, n in impls) / 1e12
    runs = (dict(min_runs=3, max_runs=10, budget_s=0.05) if quick else
            dict(min_runs=5, max_runs=50, budget_s=min(0.2, TIMING_BUDGET_S / timings)))
    log(f"{timings} kernel timings ({len(shapes)} layer shapes x {len(DIRECTIONS)} directions x every version"
        f"{' and PyTorch fp32, tf32' if torch else ''}; one launch of each: {tflop:.3g} TFLOP), each "
        f"{runs['min_runs']}-{runs['max_runs']} launches within {runs['budget_s']:.3f} s, after 2 warm-ups and a check")
    minunet_timer = cupy_timer()
    if torch:
        from ..torch_twin import op_call
        peer_timer = torch_timer()
    for layer in shapes:
        host = arrays(layer, rng)
        dev = {k: cupy.asarray(v) for k, v in host.items()}
        tdev = {k: torch.from_numpy(v).cuda() for k, v in host.items()} if torch else None
        for direction in DIRECTIONS:
            candidates = [Candidate(f"v{v}" + (" tf32" if tf32 else ""), tf32,
                                    minunet_call(backend, layer, direction, dev, v), minunet_timer)
                          for v, tf32 in kernel_versions(layer, direction)]
            if torch:
                candidates += [Candidate(f"torch {'tf32' if tf32 else 'fp32'}", tf32, op_call(layer, direction, tdev),
                                         peer_timer, tf32_switch(torch, tf32)) for tf32 in (False, True)]
            rows += check_then_time(layer, direction, host, candidates, runs, failed, log)
        del dev, tdev
        cupy.get_default_memory_pool().free_all_blocks()
    return spread_to_layers(rows, layers)


def tf32_switch(torch, tf32):
    """PyTorch's TF32 switches are global flags: set them before each of its calls."""
    def setup():
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    return setup


def torch_cuda():
    """torch where PyTorch with CUDA works, else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape (in the warm-up)
    return torch


def bench_training_cuda(quick, log, network=PAPER_UNET):
    """One SGD step of the network (default the paper's U-Net: 572x572, batch 1; float32): minunet, then
    PyTorch fp32 and tf32."""
    import cupy
    rng = np.random.default_rng(0)
    runs = dict(min_runs=3, max_runs=5, budget_s=1.0) if quick else dict(min_runs=5, max_runs=20, budget_s=5.0)
    results = {"network": dict(network)}
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    step, model = training_step_minunet("cuda", rng=rng, **network)
    seconds, n = median_time(step, cupy_timer(), **runs)
    # CuPy's pool keeps every block it ever allocated until freed, so its total after the steps is the
    # peak of memory reserved; used_bytes is what live arrays hold at the end.
    results["minunet"] = dict(seconds=seconds, runs=n, peak_reserved_bytes=pool.total_bytes(),
                              parameters=int(model.n_parameters()))
    log(f"training step minunet: {seconds * 1e3:.1f} ms, pool {pool.total_bytes() / 2**20:.0f} MiB")
    del step, model
    pool.free_all_blocks()
    torch = torch_cuda()
    if torch is None:
        results["torch"] = dict(skipped="PyTorch with CUDA is not installed")
        return results
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            step = training_step_torch("cuda", rng=rng, **network)
            seconds, n = median_time(step, torch_timer(), **runs)
            results["torch tf32" if tf32 else "torch fp32"] = dict(
                seconds=seconds, runs=n, peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                peak_reserved_bytes=torch.cuda.max_memory_reserved())
            log(f"training step torch (tf32={tf32}): {seconds * 1e3:.1f} ms")
            del step
        except Exception as e:
            results["torch tf32" if tf32 else "torch fp32"] = dict(error=repr(e))
    return results
