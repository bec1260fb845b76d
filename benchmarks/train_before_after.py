"""`python -m minunet.train` (the README's first command) of an earlier commit and of this checkout, in turn.

    python benchmarks/train_before_after.py d901854 --rounds 2 [--threads 1] [-- extra train arguments]

The earlier commit's minunet/ is extracted with `git archive` into a temporary folder and run from there (the
editable install of this checkout set aside), so both use the same Python, NumPy and data. Printed per run:
wall time, CPU time (user + system, all threads: on a machine that other processes share, the time the run
computed rather than waited), the training loop's time and its median step (from metrics.jsonl), the validation
IoU, and the load averages at its start and end. Runs alternate, so that a change in the machine's load hits
both.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs `python -m minunet.train` from the folder in sys.argv[1], not from the editable install.
FROM_FOLDER = ("import runpy, sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
               "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'minunet.train'; "
               "runpy.run_module('minunet.train', run_name='__main__')")


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(label, folder, args, out):
    command = [sys.executable, "-m", "minunet.train"] if folder is None else [sys.executable, "-c", FROM_FOLDER, folder]
    start_load, start, before = load(), time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command + ["--out", str(out), "--quiet", *args], capture_output=True, text=True, cwd=ROOT)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    iou = re.search(r"validation foreground IoU (\d\.\d+)", result.stdout)
    times = [json.loads(line)["time"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"time"' in line]
    steps = [b - a for a, b in zip(times, times[1:])]
    print(f"| {label} | {wall:.1f} | {cpu:.1f} | {times[-1]:.1f} | {statistics.median(steps) * 1e3:.0f} | "
          f"{iou.group(1) if iou else 'exit ' + str(result.returncode)} | {start_load} | {load()} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit (e.g. the branch point)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="1", help="--threads of both runs (default 1)")
    argv = sys.argv[1:]
    ours, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    args.train_args = train_args
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "before.tar"
        subprocess.run(["git", "archive", "-o", str(archive), args.commit], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "before", filter="data")
        print(f"python -m minunet.train --threads {args.threads} {' '.join(args.train_args)}: {args.commit} (before) "
              f"and this checkout (after), in turn\n")
        print("| run | wall s | CPU s | training loop s | median step ms | validation IoU | load at start | "
              "load at end |\n|---|---:|---:|---:|---:|---:|---|---|")
        train_args = ["--threads", args.threads, *args.train_args]
        for r in range(1, args.rounds + 1):
            for label, folder in (("before", str(Path(tmp) / "before")), ("after", None)):
                run(f"{label}, round {r}", folder, train_args, Path(tmp) / f"{label}-{r}")


if __name__ == "__main__":
    main()
