"""Benchmarks: every convolution kernel version on the U-Net's own layers, and one training step end to end.

    python -m minunet.bench [--device auto|cuda|numpy|sim] [--out DIR] [--quick] [--plot]

On cuda, per layer of the paper's U-Net (572x572 tile, batch 1, float32) and per op and direction
(forward, grad_input, grad_weight), every selectable kernel version (kernel_conv.all_versions) is
1. checked against version 1 on the same inputs (llm.c's order: check, then time);
2. timed with CUDA events: the median of many launches after warm-up (compilation happens in the warm-up);
3. set against its roofline floor, max(FLOPs / peak FLOP/s, bytes / peak bandwidth), from the FLOPs and the
   minimum bytes (each operand read once, the result written once) counted below, and the peaks of the GPU
   in PEAKS (datasheet numbers: assumptions, stated in the output). The L2 cache is not flushed between
   launches, so a small layer whose operands stay in L2 can beat the DRAM floor.
PyTorch (cuDNN) runs the same shapes in the same process when `import torch` works with CUDA, with TF32 off
(true float32) and on. End to end: one SGD training step (forward, loss, backward, update) of mu.UNet against
the same network in PyTorch eager, with peak GPU memory of both.

On a CPU (--device numpy, or auto without a GPU) it times a training step of a small U-Net (depth 3, 16
channels, 124x124 tile, batch 2) on the numpy device and PyTorch CPU on the same network when torch is
installed; then, per layer of that network, the numpy device's convolutions and PyTorch's on the same arrays
(checked against each other), against a roofline whose peaks are measured in the same run (a large float32
matrix product, a large array copy); and the sim device's speed on a tiny layer for every conv3x3 version.

Results: results-<device>-<date>.md (tables) and .json (all numbers, device name, versions, date) in --out;
--plot adds a roofline chart (PNG).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Datasheet peaks (dense, no sparsity): FP32 on CUDA cores, TF32 on tensor cores, DRAM bandwidth.
# Matched against the device name in this order (first match wins). Assumptions, not measurements.
PEAKS = [
    ("H200", dict(fp32=67e12, tf32=494.7e12, bandwidth=4.8e12)),
    ("H100 PCIe", dict(fp32=51.2e12, tf32=378e12, bandwidth=2.0e12)),
    ("H100 NVL", dict(fp32=60e12, tf32=417.5e12, bandwidth=3.9e12)),
    ("H100", dict(fp32=67e12, tf32=494.7e12, bandwidth=3.35e12)),  # SXM5
    ("A100-SXM4-80GB", dict(fp32=19.5e12, tf32=156e12, bandwidth=2.039e12)),
    ("A100-PCIE-80GB", dict(fp32=19.5e12, tf32=156e12, bandwidth=1.935e12)),
    ("A100", dict(fp32=19.5e12, tf32=156e12, bandwidth=1.555e12)),  # 40 GB
]
DIRECTIONS = ("forward", "grad_input", "grad_weight")


# ================================================================ the layers and what they cost

def unet_layers(tile=572, batch=1, depth=5, base=64, in_channels=1, n_classes=2):
    """The convolution layers of a valid-padding U-Net, in order: dicts with name, op, N, Ci, H, W, Co.

    H, W is the layer's INPUT size (for up_conv2x2 the size before upsampling).
    """
    layers, size, skips = [], tile, []
    ch = [base * 2**i for i in range(depth)]
    cin = in_channels
    for level in range(depth):
        for k in (1, 2):
            layers.append(dict(name=f"down{level}.conv{k}", op="conv3x3", N=batch, Ci=cin, H=size, W=size, Co=ch[level]))
            cin, size = ch[level], size - 2
        if level < depth - 1:
            skips.append(size)
            if size % 2:
                raise ValueError(f"tile {tile} does not fit a depth-{depth} U-Net (odd size {size} before pooling)")
            size //= 2
    for level in reversed(range(depth - 1)):
        layers.append(dict(name=f"up{level}.upconv", op="up_conv2x2", N=batch, Ci=ch[level + 1], H=size, W=size,
                           Co=ch[level]))
        size *= 2
        cin = 2 * ch[level]
        for k in (1, 2):
            layers.append(dict(name=f"up{level}.conv{k}", op="conv3x3", N=batch, Ci=cin, H=size, W=size, Co=ch[level]))
            cin, size = ch[level], size - 2
    layers.append(dict(name="head", op="conv1x1", N=batch, Ci=ch[0], H=size, W=size, Co=n_classes))
    return layers


def output_hw(layer, pad=0):
    H, W = layer["H"], layer["W"]
    if layer["op"] == "conv3x3":
        return H - 2 + 2 * pad, W - 2 + 2 * pad
    if layer["op"] == "up_conv2x2":
        return 2 * H, 2 * W
    return H, W


def cost(layer, direction, itemsize=4, pad=0):
    """(FLOPs, bytes) of one op and direction: 2 FLOPs per multiply-add of the convolution's sum (bias and
    ReLU not counted); bytes = every operand read once + the result written once, the least any kernel moves."""
    N, Ci, H, W, Co = (layer[k] for k in ("N", "Ci", "H", "W", "Co"))
    Ho, Wo = output_hw(layer, pad)
    taps = {"conv3x3": 9, "up_conv2x2": 4, "conv1x1": 1}[layer["op"]]
    x, y, w = N * Ci * H * W, N * Co * Ho * Wo, Co * Ci * taps
    if layer["op"] == "up_conv2x2":
        flops = 2 * N * Ci * H * W * Co * 4  # each input pixel feeds 4 outputs per output channel
    else:
        flops = 2 * N * Co * Ho * Wo * Ci * taps
    elements = {"forward": x + w + Co + y, "grad_input": y + w + x, "grad_weight": x + y + w}[direction]
    return flops, elements * itemsize


def roofline_floor(flops, nbytes, peak_flops, bandwidth):
    """The least time the op can take on the machine: bound by arithmetic or by memory traffic."""
    return max(flops / peak_flops, nbytes / bandwidth)


def peaks_for(device_name):
    for key, peaks in PEAKS:
        if key.lower() in device_name.lower():
            return key, peaks
    return None, None


# ================================================================ timing

def median_time(run, timer, min_runs=5, max_runs=50, budget_s=0.3, warmup=2):
    """Median seconds of run() after `warmup` untimed calls (compilation happens there)."""
    for _ in range(warmup):
        run()
    times, spent = [], 0.0
    while len(times) < min_runs or (len(times) < max_runs and spent < budget_s):
        t = timer(run)
        times.append(t)
        spent += t
    return statistics.median(times), len(times)


def cpu_timer(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def cupy_timer(run):
    import cupy
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    run()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / 1e3


def torch_timer(run):
    import torch
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


# ================================================================ the ops, by layer and direction

def _arrays(layer, rng, dtype=np.float32):
    N, Ci, H, W, Co = (layer[k] for k in ("N", "Ci", "H", "W", "Co"))
    Ho, Wo = output_hw(layer)
    wshape = {"conv3x3": (Co, Ci, 3, 3), "up_conv2x2": (Ci, Co, 2, 2), "conv1x1": (Co, Ci, 1, 1)}[layer["op"]]
    scale = 1.0 / np.sqrt(np.prod(wshape[1:]) if layer["op"] != "up_conv2x2" else Ci)
    return dict(x=rng.standard_normal((N, Ci, H, W)).astype(dtype),
                w=(rng.standard_normal(wshape) * scale).astype(dtype),
                b=rng.standard_normal(Co).astype(dtype),
                gy=rng.standard_normal((N, Co, Ho, Wo)).astype(dtype))


def minunet_call(backend, layer, direction, a, version=None):
    """A no-argument function launching one op of minunet's backend (a: arrays on the device); version None
    for the numpy device, which has one implementation of each op."""
    op, x, w, b, gy = layer["op"], a["x"], a["w"], a["b"], a["gy"]
    v = {} if version is None else dict(version=version)
    if op == "conv3x3":
        return {"forward": lambda: backend.conv3x3(x, w, b, 0, **v),
                "grad_input": lambda: backend.conv3x3_grad_input(gy, w, 0, x.shape, **v),
                "grad_weight": lambda: backend.conv3x3_grad_weight(x, gy, 0, **v)}[direction]
    method = {"forward": op, "grad_input": f"{op}_grad_input", "grad_weight": f"{op}_grad_weight"}[direction]
    args = {"forward": (x, w, b), "grad_input": (gy, w), "grad_weight": (x, gy)}[direction]
    return lambda: getattr(backend, method)(*args, **v)


def torch_call(layer, direction, a):
    """The same op in PyTorch (cuDNN on a GPU); a: torch tensors. The gradients come back as a tuple
    (grad_input, grad_weight, grad_bias) with None for those not asked for: torch_result picks the one."""
    import torch
    import torch.nn.functional as TF
    op, x, w, b, gy = layer["op"], a["x"], a["w"], a["b"], a["gy"]
    transposed = op == "up_conv2x2"
    stride = [2, 2] if transposed else [1, 1]
    if direction == "forward":
        if transposed:
            return lambda: TF.conv_transpose2d(x, w, b, stride=2)
        return lambda: TF.conv2d(x, w, b)
    mask = [direction == "grad_input", direction == "grad_weight", False]
    return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, stride, [0, 0], [1, 1], transposed, [0, 0],
                                                       1, mask)


def torch_result(direction, out):
    return out if direction == "forward" else out[0 if direction == "grad_input" else 1]


def kernel_versions(layer, direction):
    from .backends.kernel_conv import TF32_VERSIONS, all_versions
    op = f"{layer['op']}_{direction}"
    return [(v, TF32_VERSIONS.get(op) == v) for v in all_versions(op)]


# ================================================================ GPU: kernels and the training step

def bench_kernels_cuda(layers, quick, log):
    import cupy
    from .backends import get_backend
    backend = get_backend("cuda")
    rows, rng = [], np.random.default_rng(0)
    torch = _torch_cuda()
    runs = dict(min_runs=3, max_runs=10, budget_s=0.05) if quick else dict(min_runs=5, max_runs=50, budget_s=0.3)
    for layer in _unique_shapes(layers):
        host = _arrays(layer, rng)
        dev = {k: cupy.asarray(v) for k, v in host.items()}
        tdev = {k: torch.from_numpy(v).cuda() for k, v in host.items()} if torch else None
        for direction in DIRECTIONS:
            flops, nbytes = cost(layer, direction)
            reference = None
            for version, is_tf32 in kernel_versions(layer, direction):
                call = minunet_call(backend, layer, direction, dev, version)
                try:
                    out = cupy.asnumpy(call())
                    if reference is None:
                        reference = out  # version 1, the readable one, is the reference for the others
                    error = float(np.max(np.abs(out - reference)) / max(np.max(np.abs(reference)), 1e-30))
                    seconds, n = median_time(call, cupy_timer, **runs)
                except Exception as e:  # one failing version must not lose the whole run
                    rows.append(_row(layer, direction, f"v{version}", flops, nbytes, None, 0, error=repr(e)))
                    continue
                ok = error <= (1e-2 if is_tf32 else 1e-4)
                rows.append(_row(layer, direction, f"v{version}" + (" tf32" if is_tf32 else ""), flops, nbytes,
                                 seconds, n, rel_error=error, check="ok" if ok else "MISMATCH", tf32=is_tf32))
                log(f"{layer['name']:14s} {direction:11s} v{version}: {seconds * 1e3:8.3f} ms  rel.err {error:.1e}")
            if torch:
                for tf32 in (False, True):
                    torch.backends.cudnn.allow_tf32 = tf32
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    try:
                        seconds, n = median_time(torch_call(layer, direction, tdev), torch_timer, **runs)
                        rows.append(_row(layer, direction, "torch tf32" if tf32 else "torch fp32", flops, nbytes,
                                         seconds, n, tf32=tf32))
                    except Exception as e:
                        rows.append(_row(layer, direction, "torch", flops, nbytes, None, 0, error=repr(e)))
        del dev, tdev
        cupy.get_default_memory_pool().free_all_blocks()
    return _spread_to_layers(rows, layers)


def _unique_shapes(layers):
    seen, unique = set(), []
    for layer in layers:
        key = tuple(layer[k] for k in ("op", "N", "Ci", "H", "W", "Co"))
        if key not in seen:
            seen.add(key)
            unique.append(layer)
    return unique


def _spread_to_layers(rows, layers):
    """Rows were measured once per distinct shape; give them the names of all layers of that shape."""
    shape = lambda r: tuple(r[k] for k in ("op", "N", "Ci", "H", "W", "Co"))  # noqa: E731
    names = {}
    for layer in layers:
        names.setdefault(shape(layer), []).append(layer["name"])
    for row in rows:
        row["layers"] = names.get(shape(row), [row["layer"]])
    return rows


def _row(layer, direction, impl, flops, nbytes, seconds, runs, **extra):
    row = dict(layer=layer["name"], op=layer["op"], direction=direction, impl=impl,
               **{k: layer[k] for k in ("N", "Ci", "H", "W", "Co")}, flops=flops, bytes=nbytes,
               seconds=seconds, runs=runs)
    if seconds:
        row.update(gflops=flops / seconds / 1e9, gbps=nbytes / seconds / 1e9)
    row.update(extra)
    return row


def _torch_cuda():
    try:
        import torch
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape (in the warm-up)
    return torch


def add_roofline(rows, peaks):
    for row in rows:
        if peaks is None or not row.get("seconds"):
            continue
        peak = peaks["tf32"] if row.get("tf32") else peaks["fp32"]
        row["floor_s"] = roofline_floor(row["flops"], row["bytes"], peak, peaks["bandwidth"])
        row["of_roofline"] = row["floor_s"] / row["seconds"]
    return rows


def training_step_minunet(device, tile, batch, depth, base, rng, dtype=np.float32):
    """(step function, model) for one SGD step of mu.UNet on device, with random image, labels, weights."""
    from . import functional as F
    from .optim import SGD
    from .tensor import Tensor
    from .unet import UNet, check_input_size
    model = UNet(depth=depth, base_channels=base, device=device, dtype=dtype, seed=0)
    out = check_input_size(tile, depth)
    x = Tensor(rng.standard_normal((batch, 1, tile, tile)).astype(dtype), device=device)
    labels = Tensor(rng.integers(0, 2, (batch, out, out)).astype(np.int32), device=device)
    weights = Tensor(rng.uniform(0.5, 2.0, (batch, out, out)).astype(dtype), device=device)
    opt = SGD(model.parameters(), lr=1e-3, momentum=0.99)
    model.train()

    def step():
        opt.zero_grad()
        loss = F.weighted_softmax_cross_entropy(model(x), labels, weights)
        loss.backward()
        opt.step()
    return step, model


def torch_unet(depth, base, in_channels=1, n_classes=2, dropout=0.5):
    """The same network as mu.UNet in PyTorch: valid 3x3 convs + ReLU, max-pool, dropout at the bottom,
    2x2 transposed convs, center crop + concat [skip, up], 1x1 head."""
    import torch
    from torch import nn

    class DoubleConv(nn.Sequential):
        def __init__(self, cin, cout):
            super().__init__(nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base * 2**i for i in range(depth)]
            self.down = nn.ModuleList(DoubleConv(c0, c) for c0, c in zip([in_channels] + ch[:-1], ch))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth - 1)))
            self.up_convs = nn.ModuleList(DoubleConv(2 * ch[i], ch[i]) for i in reversed(range(depth - 1)))
            self.head = nn.Conv2d(ch[0], n_classes, 1)
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            skips = []
            for i, level in enumerate(self.down):
                x = level(x)
                if i < len(self.down) - 1:
                    skips.append(x)
                    x = nn.functional.max_pool2d(x, 2)
            x = self.drop(x)
            for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips)):
                x = up(x)
                top, left = (skip.shape[2] - x.shape[2]) // 2, (skip.shape[3] - x.shape[3]) // 2
                x = conv(torch.cat([skip[:, :, top:top + x.shape[2], left:left + x.shape[3]], x], dim=1))
            return self.head(x)
    return UNet()


def training_step_torch(device, tile, batch, depth, base, rng):
    import torch
    from .unet import check_input_size
    model = torch_unet(depth, base).to(device)
    model.train()
    out = check_input_size(tile, depth)
    x = torch.from_numpy(rng.standard_normal((batch, 1, tile, tile)).astype(np.float32)).to(device)
    labels = torch.from_numpy(rng.integers(0, 2, (batch, out, out)).astype(np.int64)).to(device)
    weights = torch.from_numpy(rng.uniform(0.5, 2.0, (batch, out, out)).astype(np.float32)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = (torch.nn.functional.cross_entropy(logits, labels, reduction="none") * weights).mean()
        loss.backward()
        opt.step()
    return step


def bench_training_cuda(quick, log):
    import cupy
    rng = np.random.default_rng(0)
    runs = dict(min_runs=3, max_runs=5, budget_s=1.0) if quick else dict(min_runs=5, max_runs=20, budget_s=5.0)
    results = {}
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    step, model = training_step_minunet("cuda", 572, 1, 5, 64, rng)
    seconds, n = median_time(step, cupy_timer, **runs)
    # CuPy's pool keeps every block it ever allocated until freed, so its total after the steps is the
    # peak of memory reserved; used_bytes is what live arrays hold at the end.
    results["minunet"] = dict(seconds=seconds, runs=n, peak_reserved_bytes=pool.total_bytes(),
                              parameters=int(model.n_parameters()) if hasattr(model, "n_parameters") else None)
    log(f"training step minunet: {seconds * 1e3:.1f} ms, pool {pool.total_bytes() / 2**20:.0f} MiB")
    del step, model
    pool.free_all_blocks()
    torch = _torch_cuda()
    if torch is None:
        results["torch"] = dict(skipped="PyTorch with CUDA is not installed")
        return results
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            step = training_step_torch("cuda", 572, 1, 5, 64, rng)
            seconds, n = median_time(step, torch_timer, **runs)
            results["torch tf32" if tf32 else "torch fp32"] = dict(
                seconds=seconds, runs=n, peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                peak_reserved_bytes=torch.cuda.max_memory_reserved())
            log(f"training step torch (tf32={tf32}): {seconds * 1e3:.1f} ms")
            del step
        except Exception as e:
            results["torch tf32" if tf32 else "torch fp32"] = dict(error=repr(e))
    return results


# ================================================================ CPU: numpy kernels and training step, sim speed

SMALL_UNET = dict(tile=124, batch=2, depth=3, base=16)


def _best_time(run, repeats):
    run()
    return min(cpu_timer(run) for _ in range(repeats))


def measure_cpu_peaks(quick=False):
    """This CPU's roofline, measured now rather than assumed: the FP32 rate of a large square float32
    matrix product (BLAS, all its threads) and the bandwidth of a large array copy (bytes read + written,
    one thread, as NumPy's elementwise ops run), each the best of a few runs."""
    n, elements, repeats = (512, 2**22, 2) if quick else (2048, 2**25, 5)  # 2**25 floats: 128 MiB, past any cache
    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    src = np.ones(elements, np.float32)
    dst = np.empty_like(src)
    gemm, copy = _best_time(lambda: a @ b, repeats), _best_time(lambda: np.copyto(dst, src), repeats)
    return dict(fp32=2 * n**3 / gemm, tf32=None, bandwidth=2 * src.nbytes / copy)


def bench_kernels_cpu(layers, quick, log):
    """Per distinct layer shape: the numpy device's convolutions and PyTorch CPU's on the same arrays, the two
    results checked against each other (float32: relative error <= 1e-4)."""
    from .backends import get_backend
    backend = get_backend("numpy")
    try:
        import torch
    except ImportError:
        torch = None
    rows, rng = [], np.random.default_rng(0)
    runs = (dict(min_runs=1, max_runs=2, budget_s=0.0, warmup=1) if quick
            else dict(min_runs=5, max_runs=30, budget_s=0.3))
    for layer in _unique_shapes(layers):
        host = _arrays(layer, rng)
        tensors = {k: torch.from_numpy(v) for k, v in host.items()} if torch else None
        for direction in DIRECTIONS:
            flops, nbytes = cost(layer, direction)
            call = minunet_call(backend, layer, direction, host)
            extra = {}
            if torch:
                peer = torch_call(layer, direction, tensors)
                with torch.no_grad():
                    ref = torch_result(direction, peer()).numpy()
                out = np.asarray(call()).reshape(ref.shape)
                extra["rel_error"] = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))
                extra["check"] = "ok" if extra["rel_error"] <= 1e-4 else "MISMATCH"
            seconds, n = median_time(call, cpu_timer, **runs)
            rows.append(_row(layer, direction, "numpy", flops, nbytes, seconds, n, **extra))
            if torch:
                with torch.no_grad():
                    seconds_t, n_t = median_time(peer, cpu_timer, **runs)
                rows.append(_row(layer, direction, "torch cpu", flops, nbytes, seconds_t, n_t))
            log(f"{layer['name']:14s} {direction:11s} numpy {seconds * 1e3:7.2f} ms"
                + (f"  torch {seconds_t * 1e3:7.2f} ms  rel.err {extra['rel_error']:.1e}" if torch else ""))
    return _spread_to_layers(rows, layers)


def cpu_totals_table(rows):
    """Per op: the numpy device's and PyTorch's time summed over the small U-Net's layers, their ratio, and
    how close the numpy device comes to the roofline floor (summed floors / summed times)."""
    total = {}
    for r in rows:
        if r.get("seconds"):
            t = total.setdefault(f"{r['op']}_{r['direction']}", {})
            time_s, floor_s = t.get(r["impl"], (0.0, 0.0))
            t[r["impl"]] = (time_s + r["seconds"] * _layer_count(r), floor_s + r.get("floor_s", 0.0) * _layer_count(r))
    lines = ["| op | numpy ms | torch cpu ms | numpy / torch | numpy % of roofline |", "|---|---:|---:|---:|---:|"]
    for op, t in total.items():
        numpy_s, floor_s = t.get("numpy", (None, 0.0))
        torch_s = t.get("torch cpu", (None, 0.0))[0]
        ratio = f"{numpy_s / torch_s:.2f}" if numpy_s and torch_s else "-"
        pct = f"{100 * floor_s / numpy_s:.0f}%" if numpy_s and floor_s else "-"
        lines.append(f"| {op} | {_ms(numpy_s)} | {_ms(torch_s)} | {ratio} | {pct} |")
    return "\n".join(lines)


def bench_training_cpu(quick, log):
    rng = np.random.default_rng(0)
    runs = dict(min_runs=1, max_runs=2, budget_s=1.0, warmup=1) if quick else dict(min_runs=3, max_runs=10, budget_s=20.0)
    results = {"network": dict(SMALL_UNET)}
    step, _ = training_step_minunet("numpy", rng=rng, **SMALL_UNET)
    seconds, n = median_time(step, cpu_timer, **runs)
    results["minunet numpy"] = dict(seconds=seconds, runs=n)
    log(f"training step minunet numpy {SMALL_UNET}: {seconds * 1e3:.0f} ms")
    try:
        import torch
    except ImportError:
        results["torch cpu"] = dict(skipped="PyTorch is not installed")
        log("training step torch cpu: skipped (PyTorch is not installed)")
        return results
    step = training_step_torch("cpu", rng=rng, **SMALL_UNET)
    seconds, n = median_time(step, cpu_timer, **runs)
    results["torch cpu"] = dict(seconds=seconds, runs=n, threads=torch.get_num_threads())
    log(f"training step torch cpu: {seconds * 1e3:.0f} ms")
    return results


SIM_LAYER = dict(name="tiny", op="conv3x3", N=1, Ci=8, H=34, W=34, Co=16)


def bench_sim(quick, log):
    """The simulator's speed on a tiny conv3x3 layer, every version and direction (float32)."""
    from .backends import get_backend
    sim = get_backend("sim")
    rng = np.random.default_rng(0)
    a = _arrays(SIM_LAYER, rng)
    rows = []
    runs = dict(min_runs=1, max_runs=1, budget_s=0.0, warmup=1) if quick else dict(min_runs=3, max_runs=5, budget_s=2.0)
    for direction in DIRECTIONS:
        flops, nbytes = cost(SIM_LAYER, direction)
        for version, is_tf32 in kernel_versions(SIM_LAYER, direction):
            seconds, n = median_time(minunet_call(sim, SIM_LAYER, direction, a, version), cpu_timer, **runs)
            rows.append(_row(SIM_LAYER, direction, f"v{version}" + (" tf32" if is_tf32 else ""), flops, nbytes,
                             seconds, n, tf32=is_tf32))
            log(f"sim {direction:11s} v{version}: {seconds * 1e3:8.1f} ms")
    return rows


# ================================================================ reports

def environment(device):
    import importlib
    versions = {"python": platform.python_version()}
    for name in ("minunet", "numpy", "cupy", "torch"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:
            versions[name] = None
    name = _cpu_name()
    if device == "cuda":
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        versions["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        versions["compute_capability"] = cupy.cuda.Device().compute_capability
    from .backends.kernel_conv import DEFAULT_VERSIONS
    return dict(device=device, device_name=name, date=datetime.datetime.now().isoformat(timespec="seconds"),
                versions=versions, default_kernel_versions=dict(DEFAULT_VERSIONS), platform=platform.platform())


def _cpu_name():
    """'AMD EPYC, 2 cores (x86_64)' from /proc/cpuinfo where there is one (platform.processor() is often empty)."""
    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model or 'CPU'}, {os.cpu_count()} cores ({platform.machine()})"


def _ms(seconds):
    return "-" if not seconds else f"{seconds * 1e3:.4g}"


def _num(value):
    return "-" if value is None else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def kernel_table(rows):
    lines = ["| layer(s) | op | direction | shape N,Ci,H,W,Co | impl | ms | GFLOP/s | GB/s | floor ms | % of roofline | check |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        shape = ",".join(str(r[k]) for k in ("N", "Ci", "H", "W", "Co"))
        pct = f"{100 * r['of_roofline']:.0f}%" if r.get("of_roofline") else "-"
        check = r.get("check", "") if "error" not in r else f"error: {r['error'][:60]}"
        lines.append(f"| {' '.join(r.get('layers', [r['layer']]))} | {r['op']} | {r['direction']} | {shape} | {r['impl']} "
                     f"| {_ms(r['seconds'])} | {_num(r.get('gflops'))} | {_num(r.get('gbps'))} "
                     f"| {_ms(r.get('floor_s'))} | {pct} | {check} |")
    return "\n".join(lines)


def _layer_count(row):
    return len(row.get("layers", [row["layer"]]))


def totals_table(rows):
    """Per implementation: the sum over all layers of the U-Net (each layer counted, shared shapes too) of
    the three directions, for the versions that cover every op (v1 and the default) and PyTorch."""
    from .backends.kernel_conv import DEFAULT_VERSIONS
    sums = {}
    for r in rows:
        if not r.get("seconds"):
            continue
        op = f"{r['op']}_{r['direction']}"
        impl = r["impl"]
        keys = [impl] if impl.startswith("torch") else []
        if impl == f"v{DEFAULT_VERSIONS[op]}":
            keys.append("minunet defaults")
        if impl == "v1":
            keys.append("minunet v1")
        best = min((x["seconds"] for x in rows if x.get("seconds") and x["op"] == r["op"] and
                    x["direction"] == r["direction"] and x["layer"] == r["layer"] and not x["impl"].startswith("torch")
                    and not x.get("tf32")), default=None)
        if best == r["seconds"] and not impl.startswith("torch") and not r.get("tf32"):
            keys.append("minunet fastest exact version per layer")
        for key in keys:
            sums[key] = sums.get(key, 0.0) + r["seconds"] * _layer_count(r)
    lines = ["| implementation | all conv layers, fwd + both grads (ms) |", "|---|---:|"]
    lines += [f"| {k} | {v * 1e3:.2f} |" for k, v in sorted(sums.items(), key=lambda kv: kv[1])]
    return "\n".join(lines)


def op_totals(rows):
    """{op: {impl: seconds}}: each implementation's time summed over every U-Net layer of the op (shared shapes
    counted once per layer). A minunet version counts only if it ran and passed the check on every shape of the
    op: a version that failed on one layer must not look fast for missing it."""
    shapes, totals, complete = {}, {}, {}
    for r in rows:
        op = f"{r['op']}_{r['direction']}"
        shapes.setdefault(op, set()).add(r["layer"])
        torch_ok = r["impl"].startswith("torch") and r.get("seconds")
        if torch_ok or (r.get("seconds") and r.get("check") == "ok"):
            totals.setdefault(op, {})
            totals[op][r["impl"]] = totals[op].get(r["impl"], 0.0) + r["seconds"] * _layer_count(r)
            complete.setdefault((op, r["impl"]), set()).add(r["layer"])
    return {op: {impl: t for impl, t in by_impl.items() if complete[(op, impl)] == shapes[op]}
            for op, by_impl in totals.items()}


def fastest_exact_versions(rows):
    """{op: version}: per op, the exact (not TF32) version with the least total time over the U-Net's layers:
    the evidence-based value of DEFAULT_VERSIONS in minunet/backends/kernel_conv.py."""
    best = {}
    for op, by_impl in op_totals(rows).items():
        exact = {impl: t for impl, t in by_impl.items() if impl.startswith("v") and not impl.endswith("tf32")}
        if exact:
            best[op] = int(min(exact, key=exact.get)[1:])
    return best


def op_totals_table(rows):
    totals = op_totals(rows)
    impls = sorted({r["impl"] for r in rows}, key=lambda i: (i.startswith("torch"), i))
    fastest = fastest_exact_versions(rows)
    lines = ["| op | " + " | ".join(impls) + " | fastest exact |", "|---|" + "---:|" * len(impls) + "---|"]
    for op, by_impl in totals.items():
        cells = [_ms(by_impl.get(impl)) for impl in impls]
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {'v%d' % fastest[op] if op in fastest else '-'} |")
    lines += ["", "Total ms over all U-Net layers of the op; `-`: not run on every layer, or failed its check. "
              f"Fastest exact version per op, for DEFAULT_VERSIONS: `{fastest}`"]
    return "\n".join(lines)


def write_report(out_dir, env, sections):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"results-{env['device']}-{env['date'][:10]}"
    md = [f"# minunet benchmark: {env['device_name']} ({env['device']}), {env['date']}", "",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
          "Default kernel versions: " + ", ".join(f"{k} v{v}" for k, v in env["default_kernel_versions"].items()), ""]
    for title, text in sections.get("markdown", []):
        md += [f"## {title}", "", text, ""]
    (out_dir / f"{stem}.md").write_text("\n".join(md))
    data = dict(env, **{k: v for k, v in sections.items() if k != "markdown"})
    (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=1, default=_json_default))
    return out_dir / f"{stem}.md", out_dir / f"{stem}.json"


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def plot_roofline(rows, peaks, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    intensity = np.logspace(-1, 4, 200)
    for name, peak, style in (("FP32", peaks["fp32"], "-"), ("TF32", peaks["tf32"], "--")):
        if peak is None:  # a CPU has no TF32 roof
            continue
        ax.plot(intensity, np.minimum(peak, intensity * peaks["bandwidth"]) / 1e9, "k" + style, lw=1, label=f"{name} roof")
    groups = {}
    for r in rows:
        if r.get("seconds"):
            kind = "PyTorch" if r["impl"].startswith("torch") else ("minunet TF32" if r.get("tf32") else "minunet")
            groups.setdefault(kind, []).append((r["flops"] / r["bytes"], r["gflops"]))
    for (kind, points), marker in zip(sorted(groups.items()), "os^v"):
        xs, ys = zip(*points)
        ax.scatter(xs, ys, marker=marker, s=14, alpha=0.6, label=kind)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte, minimum traffic)",
           ylabel="achieved GFLOP/s", title=title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ================================================================ main

def run(device="auto", out="benchmarks/results", quick=False, plot=False, log=print):
    from .backends import resolve_device
    device = resolve_device(device)
    env = environment(device)
    log(f"minunet.bench on {env['device_name']} ({device})")
    sections, chart = {"markdown": []}, None
    if device == "cuda":
        layers = unet_layers()
        rows = bench_kernels_cuda(layers, quick, log)
        peak_name, peaks = peaks_for(env["device_name"])
        add_roofline(rows, peaks)
        sections["peaks"] = dict(matched=peak_name, **(peaks or {}),
                                 note="datasheet numbers (dense), assumptions; None: GPU not in the table, no roofline")
        sections["kernels"] = rows
        assumption = (f"Roofline peaks assumed for {peak_name}: FP32 {peaks['fp32'] / 1e12:.1f} TFLOP/s, TF32 "
                      f"{peaks['tf32'] / 1e12:.1f} TFLOP/s, {peaks['bandwidth'] / 1e12:.2f} TB/s (datasheet)."
                      if peaks else "This GPU is not in minunet.bench.PEAKS: no roofline.")
        sections["markdown"] += [
            ("Totals over the U-Net's conv layers", totals_table(rows)),
            ("Per op and version, summed over the U-Net's layers", op_totals_table(rows)),
            ("Per kernel (median of CUDA-event timings after warm-up; L2 not flushed)", assumption + "\n\n" + kernel_table(rows))]
        # Written now and again at the end: if the training step dies or runs out of time, the kernels' are kept.
        log("kernel results (training step to follow): " + ", ".join(map(str, write_report(out, env, sections))))
        log(f"fastest exact version per op (for DEFAULT_VERSIONS): {fastest_exact_versions(rows)}")
        if plot and peaks:
            chart = (rows, peaks, f"minunet vs PyTorch on {env['device_name']}")
        sections["training"] = bench_training_cuda(quick, log)
        sections["markdown"].insert(0, ("Training step (paper's U-Net, 572x572, batch 1, float32, SGD)",
                                        _training_table(sections["training"])))
    else:
        if device == "numpy":
            from .backends.numpy_backend import keep_freed_memory
            keep_freed_memory()  # as python -m minunet.train does: PyTorch's step runs under it too
            sections["training"] = bench_training_cpu(quick, log)
            sections["markdown"].append((f"Training step on the CPU (small U-Net {SMALL_UNET}, float32, SGD)",
                                         _training_table(sections["training"])))
            peaks = measure_cpu_peaks(quick)
            log(f"CPU roofline, measured: {peaks['fp32'] / 1e9:.1f} GFLOP/s (sgemm), "
                f"{peaks['bandwidth'] / 1e9:.1f} GB/s (copy)")
            rows = add_roofline(bench_kernels_cpu(unet_layers(**SMALL_UNET), quick, log), peaks)
            sections["peaks"] = dict(peaks, note="measured in this run: a large float32 matrix product and a "
                                                 "large array copy (bytes read + written)")
            sections["kernels"] = rows
            floor = (f"Roofline measured in this run: {peaks['fp32'] / 1e9:.1f} GFLOP/s (a large float32 matrix "
                     f"product), {peaks['bandwidth'] / 1e9:.1f} GB/s (a large array copy, read + write).")
            sections["markdown"] += [
                ("The numpy device per op, summed over the small U-Net's layers",
                 floor + "\n\n" + cpu_totals_table(rows)),
                ("Per kernel on the CPU (median wall-clock time after warm-up)", kernel_table(rows))]
            if plot:
                chart = (rows, peaks, f"minunet numpy vs PyTorch CPU on {env['device_name']}")
        elif plot:
            log("--plot: no roofline chart for the simulator (its speed says nothing about a GPU's)")
        rows = bench_sim(quick, log)
        sections["sim"] = rows
        sections["markdown"].append((f"The sim device on a tiny layer {SIM_LAYER} (float32)",
                                     "No roofline for the simulator.\n\n" + kernel_table(rows)))
    md, js = write_report(out, env, sections)
    log(f"wrote {md} and {js}")
    if chart:  # last: a failing plot must not lose the numbers
        rows, peaks, title = chart
        path = plot_roofline(rows, peaks, Path(out) / f"roofline-{device}-{env['date'][:10]}.png", title)
        log(f"roofline chart: {path}")
    return md, js


def _training_table(results):
    lines = ["| implementation | step ms | runs | peak memory MiB |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        if name == "network":
            continue
        if "seconds" not in r:
            lines.append(f"| {name} | {r.get('skipped') or r.get('error')} | | |")
            continue
        mem = r.get("peak_reserved_bytes")
        mem_text = "-" if mem is None else f"{mem / 2**20:.0f} reserved"
        if r.get("peak_allocated_bytes") is not None:
            mem_text += f" ({r['peak_allocated_bytes'] / 2**20:.0f} allocated)"
        lines.append(f"| {name} | {r['seconds'] * 1e3:.1f} | {r['runs']} | {mem_text} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minunet.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "numpy", "sim"])
    parser.add_argument("--out", default="benchmarks/results", help="folder for results-<device>-<date>.md/.json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (the CPU run takes well under a minute)")
    parser.add_argument("--plot", action="store_true", help="also write a roofline chart")
    args = parser.parse_args(argv)
    run(args.device, args.out, args.quick, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
