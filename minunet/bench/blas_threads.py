"""The CPU benchmarks behind minunet.threads' default: BLAS threads on a quiet and on a busy machine.

A machine that is not idle (a laptop with a browser open, a shared server) is imitated by `competing`
CPU-bound processes (`while True: pass`) started for the measurement. Every figure is stored with the load
averages of the minutes it was taken in, since other processes on the machine change it too. Settings are
measured alternately, round after round, so that a change in the machine's load hits all of them alike.
"""
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from .. import threads
from .training import training_step_minunet, training_step_torch


@contextlib.contextmanager
def competing_processes(n):
    """n CPU-bound processes running for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0)  # let them start spinning before anything is timed
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def load_averages():
    """'1.52 1.31 0.90': the 1, 5 and 15 minute load averages ('-' where the OS has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def thread_counts():
    return sorted({1, threads.default_threads(), threads.usable_cores()})


def step_by_threads(small_unet, quick, log):
    """The small U-Net's training step, numpy device and PyTorch CPU, at each thread count, with 0 and 1
    competing processes: [{threads, competing, impl, seconds, runs, load}], medians over alternating rounds."""
    rng = np.random.default_rng(0)
    steps = {"minunet numpy": training_step_minunet("numpy", rng=rng, **small_unet)[0]}
    with contextlib.suppress(ImportError):
        steps["torch cpu"] = training_step_torch("cpu", rng=rng, **small_unet)
    rounds, per_round = (1, 1) if quick else (5, 3)
    rows = []
    for competing in (0, 1):
        times = {}
        with competing_processes(competing):
            for _ in range(rounds):
                for n in thread_counts():
                    for impl, step in steps.items():
                        with limited(n):
                            step()  # warm-up at this setting
                            for _ in range(per_round):
                                start = time.perf_counter()
                                step()
                                times.setdefault((n, impl), []).append(time.perf_counter() - start)
            load = load_averages()
        for (n, impl), ts in times.items():
            rows.append(dict(threads=n, competing=competing, impl=impl, seconds=statistics.median(ts), runs=len(ts),
                             load=load))
            log(f"training step {impl}, {n} threads, {competing} competing: {statistics.median(ts) * 1e3:.0f} ms "
                f"(load {load})")
    return rows


@contextlib.contextmanager
def limited(n):
    """The numpy device on n threads, and PyTorch's intra-op pool where PyTorch is installed: peers at one setting."""
    try:
        import torch
    except ImportError:
        torch = None
    previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(n)
    try:
        with threads.cpu_threads(n):
            yield
    finally:
        if torch:
            torch.set_num_threads(previous)


def step_table(rows):
    lines = ["| BLAS / torch threads | competing processes added | minunet numpy ms | torch cpu ms | numpy / torch | "
             "load averages (1, 5, 15 min) |", "|---:|---:|---:|---:|---:|---|"]
    by = {(r["threads"], r["competing"], r["impl"]): r for r in rows}
    for n, competing in sorted({(r["threads"], r["competing"]) for r in rows}, key=lambda k: (k[1], k[0])):
        ours, peer = by.get((n, competing, "minunet numpy")), by.get((n, competing, "torch cpu"))
        ratio = f"{ours['seconds'] / peer['seconds']:.2f}" if peer else "-"
        peer_ms = f"{peer['seconds'] * 1e3:.1f}" if peer else "not installed"
        lines.append(f"| {n}{' (default)' if n == threads.default_threads() else ''} | {competing} | "
                     f"{ours['seconds'] * 1e3:.1f} | {peer_ms} | {ratio} | {ours['load']} |")
    return "\n".join(lines)


def default_runs(thread_settings, log, extra_args=(), timeout_s=300):
    """`python -m minunet.train` (the default CPU run) timed end to end, each thread count with 0 and 1
    competing processes, alternating: [{threads, competing, seconds, iou, load}]. A run still going after
    timeout_s (5x the 60 s that benchmarks/README.md measures) is stopped and reported as such: seconds None."""
    rows = []
    for competing in (0, 1):
        for n in thread_settings:
            with competing_processes(competing), tempfile.TemporaryDirectory() as out:
                command = [sys.executable, "-m", "minunet.train", "--device", "numpy", "--quiet", "--threads", str(n),
                           "--out", out, *extra_args]
                start = time.perf_counter()
                try:
                    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
                    seconds, stdout, status = time.perf_counter() - start, result.stdout, result.returncode
                except subprocess.TimeoutExpired:
                    seconds, stdout, status = None, "", f"stopped after {timeout_s} s"
                load = load_averages()
            iou = re.search(r"validation foreground IoU (\d\.\d+)", stdout)
            rows.append(dict(threads=n, competing=competing, seconds=seconds, load=load, timeout_s=timeout_s,
                             iou=float(iou.group(1)) if iou else None, exit=status))
            took = f"over {timeout_s}" if seconds is None else f"{seconds:.0f}"
            log(f"default run, {n} threads, {competing} competing: {took} s, IoU {iou.group(1) if iou else '-'}, "
                f"exit {status} (load {load})")
    return rows


def default_runs_table(rows):
    lines = ["| BLAS threads | competing processes added | wall time s | validation IoU | "
             "load averages after (1, 5, 15 min) |", "|---:|---:|---:|---:|---|"]
    for r in rows:
        iou = "-" if r["iou"] is None else f"{r['iou']:.3f}"
        seconds = f"over {r['timeout_s']} (stopped)" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['threads']}{' (default)' if r['threads'] == threads.default_threads() else ''} | "
                     f"{r['competing']} | {seconds} | {iou} | {r['load']} |")
    return "\n".join(lines)
