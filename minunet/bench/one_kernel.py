"""python -m minunet.bench OP DIRECTION [--version V] [--layer NAME] [--device D]: one kernel, as llm.c's
dev/cuda programs (`./layernorm_forward 4`) and SGEMM_CUDA's `./sgemm 5` time one.

1. Check: the chosen version (default: every version of the op and direction, TF32 included; on the numpy
   device its one implementation) and PyTorch's call, on every layer of the op, against the float64
   reference. A mismatch names the worst element; whatever fails on any layer is never timed (exit status 1).
2. Time: what passed, on each layer (median after warm-up): ms, GFLOP/s, the fraction of the roofline floor.
Layers (LAYER_SETS): the paper's U-Net on cuda and numpy; on sim the small U-Net of the CPU bench: the
paper's conv3x3 forward is 290 GFLOP per pass, which at the simulator's 0.1-3 GFLOP/s would take hours.
"""
import numpy as np

from . import blas_threads, report, roofline, tables
from .check_then_time import TOLERANCE, Candidate, check_candidates, time_candidates
from .cpu import SMALL_UNET, torch_cpu
from .layers import (CONV_OPS, DIRECTIONS, arrays, kernel_versions, minunet_call, spread_to_layers, unet_layers,
                     unique_shapes)
from .timing import cpu_timer

LAYER_SETS = {"cuda": ("the paper's U-Net (572x572 tile, batch 1)", {}),
              "numpy": ("the paper's U-Net (572x572 tile, batch 1)", {}),
              "sim": (f"the small U-Net of the CPU bench ({', '.join(f'{k} {v}' for k, v in SMALL_UNET.items())})",
                      SMALL_UNET)}
RUNS = {"cuda": dict(min_runs=5, max_runs=50, budget_s=0.2), "numpy": dict(min_runs=5, max_runs=30, budget_s=0.3),
        "sim": dict(min_runs=3, max_runs=5, budget_s=2.0)}
QUICK_RUNS = dict(min_runs=1, max_runs=2, budget_s=0.0, warmup=1)


def choose(op, direction, version, layer_name, device):
    """(versions, layers) to run; a bad name: ValueError, one line listing the valid ones."""
    if op not in CONV_OPS:
        raise ValueError(f"unknown op {op!r}: one of {', '.join(CONV_OPS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r} of {op}: one of {', '.join(DIRECTIONS)}")
    what, network = LAYER_SETS[device]
    layers = [layer for layer in unet_layers(**network) if layer["op"] == op]
    if layer_name is not None:
        named = [layer for layer in layers if layer["name"] == layer_name]
        if not named:
            raise ValueError(f"--layer {layer_name!r}: the {op} layers of {what} are "
                             f"{', '.join(layer['name'] for layer in layers)}")
        layers = named
    if device == "numpy":
        if version is not None:
            raise ValueError("--version: the numpy device has one implementation of each op; versions are for "
                             "--device sim or cuda")
        return [(None, False)], layers
    versions = kernel_versions(layers[0], direction)
    if version is None:
        return versions, layers
    chosen = [(v, tf32) for v, tf32 in versions if str(v) == str(version).removeprefix("v")]
    if not chosen:
        valid = ", ".join(f"{v}{' (tf32)' if tf32 else ''}" for v, tf32 in versions)
        raise ValueError(f"{op}_{direction} has no version {version!r}: one of {valid}")
    return chosen, layers


def run_one(op, direction, version=None, layer_name=None, device="numpy", quick=False, n_threads=None, log=print):
    """Check, then time, one op and direction (module docstring) with n_threads BLAS and PyTorch threads
    (default: minunet.threads' default); returns the exit status: 0, or 1 when a check failed. A bad name or
    thread count: ValueError before anything runs."""
    from .. import threads
    versions, layers = choose(op, direction, version, layer_name, device)
    n = threads.resolve_threads(n_threads)
    log(f"{threads.describe(n, given=n_threads is not None)}, PyTorch's threads the same")
    with blas_threads.limited(n):
        return _check_all_then_time(op, direction, versions, layers, device, quick, log)


def _check_all_then_time(op, direction, versions, layers, device, quick, log):
    env = report.environment(device)
    log(f"{op} {direction} on {device} ({env['device_name']}), float32, on {len(layers)} layer(s) of "
        f"{LAYER_SETS[device][0]}; load averages {blas_threads.load_averages()}")
    peaks = _peaks(device, env, quick, log)
    make = _candidate_maker(device, versions, log)
    failed, wrong, passed = {}, set(), []
    log(f"checking against the float64 reference (|out - ref| <= {TOLERANCE[False]:g}*max|ref|, TF32 "
        f"{TOLERANCE[True]:g}*max|ref|) on every layer before any timing")
    for layer in unique_shapes(layers):
        host = arrays(layer, np.random.default_rng(0))
        bad, ok = check_candidates(layer, direction, host, make(layer, direction, host), failed, log)
        for r in bad:  # a mismatch (logged), an error, or not run after an earlier mismatch
            if "error" in r:
                log(f"ERROR {op}_{direction} {r['impl']} on {r['layer']}: {r['error']}; never timed")
            wrong.add(r["impl"])
        passed += ok
    rows = time_candidates([p for p in passed if p[0].impl not in wrong], RUNS[device] if not quick else QUICK_RUNS,
                           log)
    rows = roofline.add_roofline(spread_to_layers(rows, layers), peaks)
    if rows:
        log(tables.kernel_table(rows))
        totals = tables.op_totals(rows).get(f"{op}_{direction}", {})
        log(f"total over the {len(layers)} layer(s): " + ", ".join(f"{impl} {s * 1e3:.4g} ms" for impl, s in
                                                                  sorted(totals.items(), key=lambda kv: kv[1])))
    log(f"load averages {blas_threads.load_averages()}")
    if wrong:
        log(f"FAILED: {', '.join(sorted(wrong))} failed the check against the float64 reference and "
            f"{'were' if len(wrong) > 1 else 'was'} not timed")
    return 1 if wrong else 0


def _peaks(device, env, quick, log):
    """The roofline: datasheet peaks of the GPU, or this CPU's measured now; none for the simulator."""
    if device == "sim":
        log("sim: no roofline and no PyTorch beside it (the simulator's speed says nothing about a GPU's)")
        return None
    if device == "numpy":
        peaks = roofline.measure_cpu_peaks(quick)
        log(f"roofline measured now: {peaks['fp32'] / 1e9:.1f} GFLOP/s (a float32 matrix product), "
            f"{peaks['bandwidth'] / 1e9:.1f} GB/s (an array copy)")
        return peaks
    name, peaks = roofline.peaks_for(env["device_name"])
    log(f"roofline: datasheet peaks of {name}" if peaks else f"{env['device_name']} is not in PEAKS: no roofline")
    return peaks


def _candidate_maker(device, versions, log):
    """make(layer, direction, host) -> [Candidate]: minunet's chosen versions on the device, then PyTorch's
    call where it is installed (CPU for numpy; cuDNN for cuda, TF32 off, and on beside a TF32 version)."""
    from ..backends import get_backend
    backend = get_backend(device)
    if device == "cuda":
        import cupy

        from .gpu import tf32_switch, torch_cuda
        from .timing import cupy_timer, torch_timer
        timer, to_device, torch = cupy_timer(), cupy.asarray, torch_cuda()
        peers = [("torch fp32", False)] + ([("torch tf32", True)] if any(tf32 for _, tf32 in versions) else [])
        peer_timer = torch_timer() if torch else None
    else:
        timer, to_device, torch = cpu_timer, np.asarray, torch_cpu() if device == "numpy" else None
        peers, peer_timer = [("torch cpu", False)], cpu_timer
    if device != "sim" and torch is None:
        log(f"PyTorch{' with CUDA' if device == 'cuda' else ''} is not installed: no peer beside minunet")

    def make(layer, direction, host):
        dev = {k: to_device(v) for k, v in host.items()}
        made = [Candidate("numpy" if v is None else f"v{v}" + (" tf32" if tf32 else ""), tf32,
                          minunet_call(backend, layer, direction, dev, v), timer) for v, tf32 in versions]
        if torch:
            from ..torch_twin import op_call
            tensors = {k: torch.from_numpy(v).to("cuda" if device == "cuda" else "cpu") for k, v in host.items()}
            made += [Candidate(name, tf32, op_call(layer, direction, tensors), peer_timer,
                               tf32_switch(torch, tf32) if device == "cuda" else None) for name, tf32 in peers]
        return made
    return make
