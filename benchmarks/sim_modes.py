"""What the simulator's checking modes cost on the kernel tests: each operator test file run with pytest in each
mode, after one run that compiles what it needs, timed by wall clock and by CPU time (user + system, which
other processes on a busy machine disturb less). Prints a Markdown table with the CPU model and the load.

    python benchmarks/sim_modes.py                      # default and MINUNET_SIM_INITCHECK=1
    python benchmarks/sim_modes.py --modes default --repo DIR   # another checkout (PYTHONPATH=DIR too)
"""
import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

TEST_FILES = ["test_conv3x3", "test_conv3x3_versions", "test_up_conv2x2", "test_conv1x1", "test_split_k",
              "test_max_pool2x2", "test_softmax_cross_entropy", "test_sgd", "test_elementwise"]
MODES = {"default": {}, "initcheck": {"MINUNET_SIM_INITCHECK": "1"}}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def run(repo, test_file, env):
    """(wall seconds, CPU seconds, pytest's summary line) of one run of the file."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             f"tests/{test_file}.py"], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = result.stdout.strip().splitlines()
    return wall, cpu, lines[-1] if lines else result.stderr[-200:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args(argv)
    envs = {mode: dict(os.environ, **MODES[mode]) for mode in args.modes}
    for test_file in TEST_FILES:  # compile once, untimed
        for mode in args.modes:
            run(args.repo, test_file, envs[mode])
    print(f"{cpu_model()}, {os.cpu_count()} cores; load at the start {os.getloadavg()}")
    print("| test file | " + " | ".join(f"{m}: wall s, CPU s" for m in args.modes) + " |")
    print("|---|" + "---|" * len(args.modes))
    totals = {mode: [0.0, 0.0] for mode in args.modes}
    for test_file in TEST_FILES:
        cells = []
        for mode in args.modes:
            wall, cpu, summary = run(args.repo, test_file, envs[mode])
            totals[mode][0] += wall
            totals[mode][1] += cpu
            cells.append(f"{wall:.1f}, {cpu:.1f} ({summary})")
        print(f"| {test_file} | " + " | ".join(cells) + " |")
    print("| all | " + " | ".join(f"{w:.1f}, {c:.1f}" for w, c in totals.values()) + " |")
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
